/*
 * monoquant.h — the public C ABI of Mono Quant (libmonoquant.so).
 *
 * Post-training quantization of tensors (INT8 per-tensor/per-channel, INT4 group-wise, FP16, BF16)
 * and torch.ao.quantization-compatible observers, computed by the Go engine behind this header.
 *
 * If a function, type or constant does not appear in this file, it is not part of the published
 * API (the cgo-generated header of the build is not the public one).
 *
 * Conventions (after libgit2, sqlite3 and zstd):
 *  - Every function that can fail returns an int status: MQ_OK (0) or a negative MQ_E* code.
 *    The reason, in words, is then available from mq_last_error() on the same thread.
 *  - Output parameters of constructors come first (mq_observer_new(&obs, &cfg)).
 *  - The caller owns every buffer it passes in; the library reads or writes it only for the
 *    length of the call and never keeps a pointer to it. Strings returned by the library are
 *    owned by the library.
 *  - Handles (mq_observer*) are opaque. Every _new has a _free that accepts NULL and a stale or
 *    already-freed handle without crashing. Any other function given a NULL, stale, freed or
 *    foreign handle returns MQ_EHANDLE.
 *  - All functions are thread-safe. Calls on one handle from several threads are serialised by the
 *    library; calls on different handles and the stateless functions run in parallel.
 *  - Large tensors are split across the library's worker threads (Go's GOMAXPROCS, which honours
 *    the GOMAXPROCS environment variable at load time).
 */
#ifndef MONOQUANT_H
#define MONOQUANT_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && defined(MQ_BUILDING_LIBRARY)
#  define MQ_API __declspec(dllexport)
#elif defined(_WIN32)
#  define MQ_API __declspec(dllimport)
#elif defined(__GNUC__) && __GNUC__ >= 4
#  define MQ_API __attribute__((visibility("default")))
#else
#  define MQ_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ==================================================================================================
 * Version
 * ================================================================================================ */

#define MQ_VERSION_MAJOR 0
#define MQ_VERSION_MINOR 1
#define MQ_VERSION_PATCH 0
/* MAJOR*10000 + MINOR*100 + PATCH, as zstd does: 0.1.0 is 100. */
#define MQ_VERSION_NUMBER (MQ_VERSION_MAJOR * 10000 + MQ_VERSION_MINOR * 100 + MQ_VERSION_PATCH)
#define MQ_VERSION_STRING "0.1.0"

/* The version of the loaded library, to compare with MQ_VERSION_NUMBER (the header you compiled
 * against). A different MQ_VERSION_MAJOR means the ABI is not compatible. Never fails. */
MQ_API unsigned mq_version_number(void);
/* "0.1.0" for the loaded library. Static storage owned by the library; never NULL. */
MQ_API const char* mq_version_string(void);

/* ==================================================================================================
 * Status codes and errors
 * ================================================================================================ */

typedef enum mq_status {
    MQ_OK = 0,
    MQ_EINVAL = -1,        /* invalid argument: NULL pointer, bad config value or config version */
    MQ_EHANDLE = -2,       /* NULL, stale, freed or foreign handle */
    MQ_EDTYPE = -3,        /* unknown element type, or one the function does not accept */
    MQ_ESHAPE = -4,        /* bad ndim, negative dimension, element count overflow, shape mismatch */
    MQ_EBUFFER = -5,       /* a caller buffer is too short (the message says how much is needed) */
    MQ_ENONFINITE = -6,    /* input holds NaN or +-Inf (see mq_config.nonfinite to clamp instead) */
    MQ_EIO = -7,           /* reading or writing a file failed */
    MQ_EFORMAT = -8,       /* a file or byte stream is corrupt or not in the expected format */
    MQ_EUNSUPPORTED = -9,  /* valid request the library does not support */
    MQ_EINTERNAL = -10,    /* unexpected engine error (a bug: please report it with the message) */
    MQ_EPANIC = -11        /* the engine panicked; the call was abandoned, the message says why */
} mq_status;

/* A short constant description of a status code ("invalid argument", ...), "unknown status" for
 * codes this library does not define. Static storage; never NULL. */
MQ_API const char* mq_status_string(int status);

/* The message of the most recent failed call made by the calling OS thread ("" if none has failed
 * yet). Successful calls leave it unchanged. The string is owned by the library and stays valid
 * until the next failing call on this thread; never NULL. */
MQ_API const char* mq_last_error(void);

/* ==================================================================================================
 * Tensors
 * ================================================================================================ */

/* Element types (values are part of the ABI). Named MQ_DTYPE_* because MQ_BF16 and MQ_FP16 name
 * quantization formats below. */
typedef enum mq_dtype {
    MQ_DTYPE_F32 = 1,
    MQ_DTYPE_F16 = 2,
    MQ_DTYPE_BF16 = 3,
    MQ_DTYPE_F64 = 4,
    MQ_DTYPE_I8 = 5,
    MQ_DTYPE_U8 = 6,
    MQ_DTYPE_I16 = 7,
    MQ_DTYPE_I32 = 8,
    MQ_DTYPE_I64 = 9,
    MQ_DTYPE_BOOL = 10
} mq_dtype;

/* The most dimensions a tensor may have. */
#define MQ_MAX_DIMS 8

/* A view of caller memory: nothing is owned, nothing is kept after the call.
 * Quantizers and observers accept the float types (F32, F16, BF16, F64); F32 is read in place,
 * never copied; the other float types are converted chunk by chunk. Data is little-endian. */
typedef struct mq_tensor {
    const void* data;       /* first element; may be NULL only when the tensor has no elements */
    int32_t dtype;          /* an mq_dtype */
    int32_t ndim;           /* 0 (a scalar) .. MQ_MAX_DIMS */
    const int64_t* shape;   /* ndim sizes, each >= 0; may be NULL when ndim is 0 */
    const int64_t* strides; /* ndim strides in ELEMENTS (torch's .stride()), or NULL for row-major
                               contiguous data. Strides that are not the contiguous ones make the
                               library copy the tensor once into a contiguous buffer of its own
                               for the length of the call; negative strides are refused. */
} mq_tensor;

/* ==================================================================================================
 * Quantization config
 * ================================================================================================ */

typedef enum mq_format {
    MQ_INT8 = 1, /* one byte per value; per-tensor or per-channel (default) */
    MQ_INT4 = 2, /* two values per byte, the even flat index in the low nibble; signed values are
                    two's-complement nibbles; group-wise (default) */
    MQ_FP16 = 3, /* IEEE half, round to nearest even; no scales */
    MQ_BF16 = 4  /* bfloat16, round to nearest even; no scales */
} mq_format;

typedef enum mq_scheme {
    MQ_SCHEME_DEFAULT = 0,    /* symmetric */
    MQ_SYMMETRIC = 1,         /* torch per_tensor_symmetric / per_channel_symmetric */
    MQ_ASYMMETRIC = 2         /* torch per_tensor_affine / per_channel_affine */
} mq_scheme;

typedef enum mq_granularity {
    MQ_GRANULARITY_DEFAULT = 0, /* per-channel for INT8, per-group for INT4 */
    MQ_PER_TENSOR = 1,          /* one scale for the whole tensor */
    MQ_PER_CHANNEL = 2,         /* one scale per index along mq_config.axis */
    MQ_PER_GROUP = 3            /* one scale per group_size consecutive values of the last dim */
} mq_granularity;

typedef enum mq_qdtype {
    MQ_QDTYPE_DEFAULT = 0, /* qint8 for INT8, qint4 for INT4 */
    MQ_QINT8 = 1,          /* -128..127 */
    MQ_QUINT8 = 2,         /* 0..255 */
    MQ_QINT4 = 3,          /* -8..7 */
    MQ_QUINT4 = 4,         /* 0..15 */
    MQ_QINT32 = 5          /* observers only */
} mq_qdtype;

typedef enum mq_nonfinite {
    MQ_NONFINITE_REJECT = 0, /* NaN/Inf in the input fail with MQ_ENONFINITE (default) */
    MQ_NONFINITE_CLAMP = 1   /* leave them out of the ranges; NaN -> zero point, +-Inf -> grid ends
                                (FP16/BF16: cast as they are) */
} mq_nonfinite;

/* Bump when fields are added; the library accepts configs of any version it knows. */
#define MQ_CONFIG_VERSION 1

/* How a tensor is quantized. Fill it with mq_config_init, then change what you need. */
typedef struct mq_config {
    uint32_t size;          /* sizeof(mq_config), set by mq_config_init; checked by every call */
    uint32_t version;       /* MQ_CONFIG_VERSION, set by mq_config_init; checked by every call */
    int32_t format;         /* mq_format; default MQ_INT8 */
    int32_t scheme;         /* mq_scheme; default symmetric */
    int32_t granularity;    /* mq_granularity; default per-channel (INT8) / per-group (INT4) */
    int32_t axis;           /* per-channel: the channel dimension, negative counts from the end;
                               default 0 */
    int32_t group_size;     /* per-group: values per group along the last dimension, which it must
                               divide; 0 means 128 */
    int32_t qdtype;         /* mq_qdtype: storage type of the integer values; default signed */
    int32_t reduce_range;   /* non-zero: torch's reduce_range, halve the integer range */
    int32_t has_quant_range;/* non-zero: use quant_min/quant_max instead of the qdtype's range */
    int32_t quant_min;      /* torch's quant_min (only with has_quant_range); must be <= 0 */
    int32_t quant_max;      /* torch's quant_max (only with has_quant_range); must be >= 0 */
    float eps;              /* floor of every scale; 0 means torch.finfo(float32).eps */
    int32_t nonfinite;      /* mq_nonfinite: what NaN/Inf in the input do; default reject */
    int32_t saturate_fp16;  /* non-zero: FP16 clamps finite values to +-65504 instead of
                               overflowing to +-Inf */
} mq_config;

/* Fills *cfg with the defaults (INT8, symmetric, per-channel along axis 0, qint8, torch's eps)
 * and sets size and version. Returns MQ_EINVAL if cfg is NULL. */
MQ_API int mq_config_init(mq_config* cfg);

/* What a quantize call saw. */
typedef struct mq_quant_stats {
    uint64_t nonfinite;       /* NaN and +-Inf inputs */
    int64_t first_nonfinite;  /* flat index of the first one, -1 if none */
    uint64_t overflow;        /* finite inputs that became +-Inf in an FP16/BF16 cast */
} mq_quant_stats;

/* Bytes before and after quantization of one tensor. */
typedef struct mq_size_info {
    uint64_t elements;
    uint64_t original_bytes;  /* elements x the input dtype's width */
    uint64_t data_bytes;      /* quantized values (INT4 packed two per byte) */
    uint64_t param_bytes;     /* float32 scales, plus int32 zero points where the scheme needs
                                 them (not for symmetric signed types, whose zero points are 0) */
    uint64_t quantized_bytes; /* data_bytes + param_bytes */
    double bits_per_weight;   /* 8 * quantized_bytes / elements (0 for an empty tensor) */
} mq_size_info;

/* ==================================================================================================
 * Stateless tensor quantization (zero copy: every output goes to a caller buffer)
 *
 * Common failures of the functions below: MQ_EINVAL for a NULL cfg/input/output pointer, a config
 * whose size or version this library does not know, or a config that does not fit the tensor (bad
 * axis, group size not dividing the last dimension, storage type not matching the format, ...);
 * MQ_EDTYPE for an input that is not F32/F16/BF16/F64; MQ_ESHAPE for a bad ndim, a negative
 * dimension or an element count that overflows; MQ_EBUFFER when out_bytes / n_params / out_count
 * are smaller than needed (mq_quantized_size tells how much).
 * ================================================================================================ */

/* Sizes the outputs of quantizing `input` with `cfg`: *data_bytes for the quantized values and
 * *n_params for the number of scale/zero-point pairs (0 for FP16/BF16). input->data is not read
 * and may be NULL. Both outputs are required. */
MQ_API int mq_quantized_size(const mq_config* cfg, const mq_tensor* input, size_t* data_bytes,
                             size_t* n_params);

/* Quantizes `input`: per-granule min/max -> torch's qparams -> round half to even, clamp.
 * Writes the values to out (out_bytes >= data_bytes of mq_quantized_size), and n_params scales and
 * zero points (n_params >= the needed count; row-major [rows, K/group_size] for per-group).
 * For FP16/BF16, scales and zero_points may be NULL and n_params 0. stats may be NULL; when given
 * it is filled even when the call fails with MQ_ENONFINITE. */
MQ_API int mq_quantize_tensor(const mq_config* cfg, const mq_tensor* input, void* out,
                              size_t out_bytes, float* scales, int32_t* zero_points,
                              size_t n_params, mq_quant_stats* stats);

/* Quantizes `input` with qparams the caller already has (from an observer or an earlier call).
 * INT8/INT4 only (MQ_EINVAL for FP16/BF16). Scales must be positive and finite and zero points
 * inside the storage type's range, otherwise MQ_EINVAL naming the first bad one. */
MQ_API int mq_quantize_tensor_with_params(const mq_config* cfg, const mq_tensor* input, void* out,
                                          size_t out_bytes, const float* scales,
                                          const int32_t* zero_points, size_t n_params);

/* Writes (q - zero_point) * scale as float32 for every element of a quantized tensor of the given
 * shape (FP16/BF16: widens the stored halves; scales/zero_points may then be NULL). q holds
 * q_bytes bytes (>= data_bytes); out holds out_count floats (>= the element count). */
MQ_API int mq_dequantize_tensor(const mq_config* cfg, const void* q, size_t q_bytes, int32_t ndim,
                                const int64_t* shape, const float* scales,
                                const int32_t* zero_points, size_t n_params, float* out,
                                size_t out_count);

/* torch's compute_sqnr: 20*log10(||a|| / ||a - b||) in dB, accumulated in double. Identical inputs
 * give +Inf; a = b = 0 gives NaN, as in torch. MQ_EINVAL for a NULL pointer (a and b may be NULL
 * when n is 0) or NULL out. */
MQ_API int mq_sqnr(const float* a, const float* b, size_t n, double* out);

/* Sizes of `input` (its dtype is the original width) before and after quantization with cfg.
 * input->data is not read. Fails like mq_quantized_size. */
MQ_API int mq_size_report(const mq_config* cfg, const mq_tensor* input, mq_size_info* out);

/* ==================================================================================================
 * Observers (torch.ao.quantization parity)
 * ================================================================================================ */

/* An observer handle. Opaque: not a pointer to memory, never dereference it. */
typedef struct mq_observer mq_observer;

typedef enum mq_observer_kind {
    MQ_OBSERVER_MINMAX = 1,                     /* MinMaxObserver */
    MQ_OBSERVER_MOVING_AVERAGE = 2,             /* MovingAverageMinMaxObserver */
    MQ_OBSERVER_HISTOGRAM = 3,                  /* HistogramObserver */
    MQ_OBSERVER_PER_CHANNEL_MINMAX = 4,         /* PerChannelMinMaxObserver */
    MQ_OBSERVER_PER_CHANNEL_MOVING_AVERAGE = 5  /* MovingAveragePerChannelMinMaxObserver */
} mq_observer_kind;

#define MQ_OBSERVER_CONFIG_VERSION 1

/* torch's constructor arguments. Fill with mq_observer_config_init, then change what you need. */
typedef struct mq_observer_config {
    uint32_t size;             /* sizeof(mq_observer_config), set by _init; checked */
    uint32_t version;          /* MQ_OBSERVER_CONFIG_VERSION, set by _init; checked */
    int32_t kind;              /* mq_observer_kind; default MQ_OBSERVER_MINMAX */
    int32_t qdtype;            /* mq_qdtype; default (0) quint8, as torch */
    int32_t scheme;            /* mq_scheme; default (0) asymmetric (torch's *_affine) */
    int32_t reduce_range;      /* non-zero: torch's reduce_range */
    int32_t has_quant_range;   /* non-zero: use quant_min/quant_max */
    int32_t quant_min;         /* torch's quant_min (only with has_quant_range) */
    int32_t quant_max;         /* torch's quant_max (only with has_quant_range) */
    float eps;                 /* 0 means torch.finfo(float32).eps */
    float averaging_constant;  /* moving-average kinds, in (0, 1]; 0 means torch's 0.01 */
    int32_t ch_axis;           /* per-channel kinds; negative counts from the end; default 0 */
    int32_t bins;              /* histogram; 0 means torch's 2048 */
} mq_observer_config;

/* Fills *cfg with torch's defaults (MinMaxObserver, quint8, affine). MQ_EINVAL if cfg is NULL. */
MQ_API int mq_observer_config_init(mq_observer_config* cfg);

/* Creates an observer in *out (set to NULL on failure). MQ_EINVAL for NULL out/cfg, an unknown
 * config version or options torch would refuse (the message says which). Free it with
 * mq_observer_free. */
MQ_API int mq_observer_new(mq_observer** out, const mq_observer_config* cfg);

/* Folds one batch into the observer (torch's forward). Float dtypes only (MQ_EDTYPE otherwise);
 * an empty tensor is ignored. Input the observer refuses leaves the state unchanged and the
 * message names the problem: NaN (and +-Inf for the min/max kinds) fails with MQ_ENONFINITE; a
 * per-channel batch without ch_axis or with a different channel count than earlier batches with
 * MQ_EINVAL. MQ_EHANDLE for a NULL/stale handle,
 * MQ_ESHAPE for a malformed shape. */
MQ_API int mq_observer_update(mq_observer* obs, const mq_tensor* input);

/* torch's calculate_qparams: writes the scales and zero points (one, or one per channel) and sets
 * *n_out to their count. If cap is smaller than that count, nothing is written, *n_out is still
 * set and the call returns MQ_EBUFFER, so (NULL, NULL, 0, &n) asks for the count. */
MQ_API int mq_observer_qparams(mq_observer* obs, float* scales, int32_t* zero_points, size_t cap,
                               size_t* n_out);

/* The running min and max (one per channel for per-channel kinds, 0 before the first batch; the
 * per-tensor kinds report +Inf/-Inf before the first batch). Buffers and MQ_EBUFFER as for
 * mq_observer_qparams. */
MQ_API int mq_observer_minmax(mq_observer* obs, float* mins, float* maxs, size_t cap,
                              size_t* n_out);

/* Forgets everything observed (torch's reset_min_max_vals). MQ_EHANDLE for a bad handle. */
MQ_API int mq_observer_reset(mq_observer* obs);

/* Frees the observer. Accepts NULL (MQ_OK, no-op) and a stale or already-freed handle (MQ_EHANDLE,
 * nothing else happens). Waits for a call running on the same handle in another thread. */
MQ_API int mq_observer_free(mq_observer* obs);

/* ==================================================================================================
 * Models (reserved)
 *
 * Loading checkpoints, building a model from caller tensors, calibrating named layers,
 * quantizing with a progress callback, saving, reading tensors back and reporting will appear in
 * this section as mq_model_* / mq_report_* functions over the opaque handles below. They are
 * declared now so the handle types are stable; no function takes them yet.
 * ================================================================================================ */

typedef struct mq_model mq_model;
typedef struct mq_report mq_report;

/* ==================================================================================================
 * Debugging and testing (experimental: may change in any release)
 * ================================================================================================ */

/* Number of live handles of every kind. Tests assert it is 0 once everything is freed. */
MQ_API int64_t mq_debug_live_handles(void);

/* Makes the engine panic inside an export so tests can check that panics become MQ_EPANIC with
 * the message in mq_last_error. Always returns MQ_EPANIC. */
MQ_API int mq_debug_panic(void);

#ifdef __cplusplus
}
#endif

#endif /* MONOQUANT_H */
