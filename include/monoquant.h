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
 *    length of the call and never keeps a pointer to it, with two exceptions: mq_model_add_tensor
 *    and mq_model_set_hessian borrow contiguous tensor data until mq_model_free. Strings returned by the library are
 *    owned by the library.
 *  - Handles (mq_observer*, mq_model*) are opaque. Every _new has a _free that accepts NULL and a
 *    stale or already-freed handle without crashing. Any other function given a NULL, stale, freed or
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
    MQ_EPANIC = -11,       /* the engine panicked; the call was abandoned, the message says why */
    MQ_ECANCELED = -12     /* a progress callback asked to stop; nothing was produced */
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
                               for the length of the call; negative strides are refused, and
                               so are strides whose reach overflows 64 bits. A view whose
                               elements overlap (stride 0: a broadcast or expand()ed tensor) is
                               copied only if its logical size is at most 16 times the bytes it
                               spans plus 1 MiB; a larger one fails with MQ_ESHAPE (pass a
                               contiguous copy). */
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
    MQ_SCHEME_DEFAULT = 0,    /* the engine's default: symmetric for the tensor functions and
                                 for INT8 models; asymmetric for INT4 models (mq_defaults_json) */
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
    int32_t scheme;         /* mq_scheme; default MQ_SCHEME_DEFAULT */
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
    int32_t saturate_fp16;  /* non-zero: FP16 and BF16 clamp finite values to their largest
                               finite value (+-65504, +-3.3895e38) instead of overflowing to +-Inf
                               (torch's .to(), the default of the tensor functions). Models and
                               files (mq_model_quantize, mq_quantize_file) always saturate, and
                               their report warns with the count. */
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

/* How the result of quantizing `input` with `cfg` is stored, so a caller can allocate the outputs
 * with the right element types and shapes (the layout of docs/FORMAT.md, decided by the engine). */
typedef struct mq_layout {
    int32_t data_dtype;               /* mq_dtype of the stored values: I8 or U8 (INT8), U8 (INT4,
                                         packed two per byte), F16 or BF16 */
    int32_t data_ndim;
    int64_t data_shape[MQ_MAX_DIMS];  /* the input's shape; INT4 halves the last dimension when it
                                         is even, else one dimension of ceil(n/2) bytes */
    int32_t param_ndim;               /* 0 for FP16/BF16 */
    int64_t param_shape[MQ_MAX_DIMS]; /* of the scales and zero points: [1] per tensor, [C] per
                                         channel, [rows, K/group_size] per group */
    int32_t stores_zero_point;        /* non-zero when a checkpoint keeps the zero points (not for
                                         symmetric signed types, whose zero points are 0) */
    mq_config resolved;               /* cfg with every default filled in (granularity, axis made
                                         non-negative, group_size, qdtype, eps) */
} mq_layout;

/* Fills *out with the layout of quantizing `input` (shape and dtype; data is not read and may be
 * NULL) with cfg. Fails like mq_quantized_size; MQ_EINVAL for a NULL out. */
MQ_API int mq_quantized_layout(const mq_config* cfg, const mq_tensor* input, mq_layout* out);

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
 * Models
 *
 * A model is a set of named tensors (a state_dict) behind an opaque handle: built from caller
 * tensors (mq_model_new + mq_model_add_tensor) or read from a checkpoint file (mq_model_load).
 * mq_model_quantize turns a float model into a NEW quantized model handle (the tensors of the
 * quantized checkpoint format of docs/FORMAT.md: <name>, <name>.scale, <name>.zero_point, with
 * the config in the "monoquant" metadata entry); the input model is left unchanged. Every handle
 * is freed with mq_model_free.
 *
 * A model is either float (built, or loaded from a file without monoquant metadata) or quantized
 * (returned by mq_model_quantize, or loaded from a file monoquant wrote). Quantized models are
 * read-only: adding tensors, module types, metadata and calibrating them fail with MQ_EINVAL, and
 * quantizing them again too (dequantize first).
 *
 * Common failures of the functions below: MQ_EHANDLE for a NULL, stale, freed or non-model
 * handle; MQ_EINVAL for a NULL pointer argument or a call made from inside the same model's
 * progress callback (which would otherwise deadlock).
 * ================================================================================================ */

typedef struct mq_model mq_model;
/* The report of one mq_quantize_file or mq_run_reproduce run (read it with mq_report_json, free
 * it with mq_report_free). */
typedef struct mq_report mq_report;

/* Layer types selected for quantization (a bitmask; values are part of the ABI). */
typedef enum mq_layer_type {
    MQ_LAYER_LINEAR = 1 << 0,    /* torch.nn.Linear (and weights shaped like one in a bare state_dict) */
    MQ_LAYER_CONV1D = 1 << 1,
    MQ_LAYER_CONV2D = 1 << 2,
    MQ_LAYER_CONV3D = 1 << 3,
    MQ_LAYER_LSTM = 1 << 4,
    MQ_LAYER_GRU = 1 << 5,
    MQ_LAYER_RNN = 1 << 6,
    MQ_LAYER_EMBEDDING = 1 << 7, /* opt-in: not in the default selection */
    MQ_LAYER_DEFAULT = MQ_LAYER_LINEAR | MQ_LAYER_CONV2D | MQ_LAYER_LSTM
} mq_layer_type;

/* Version 1's activation switch, kept as an alias of `activations` (version 2). */
typedef enum mq_mode {
    MQ_MODE_WEIGHT_ONLY = 0, /* the default: `activations` (or the engine's default) decides */
    MQ_MODE_STATIC = 1       /* activations "static": qparams per layer from mq_model_calibrate */
} mq_mode;

/* May an INT4 tensor whose rows the group size does not divide use a smaller group? */
typedef enum mq_group_fallback {
    MQ_GROUP_FALLBACK_DEFAULT = 0, /* only when the group size is the engine's default */
    MQ_GROUP_FALLBACK_ALLOW = 1,   /* the largest divisor >= 16, else INT8 per-channel, warned */
    MQ_GROUP_FALLBACK_REFUSE = 2   /* a group size that does not fit is an error (MQ_EINVAL) */
} mq_group_fallback;

/* 2 added recipe_json, activations, method and group_fallback. The library also accepts a
 * version 1 struct (size and version as an older mq_model_config_init set them): the fields it
 * lacks take their defaults. */
#define MQ_MODEL_CONFIG_VERSION 2

/* What mq_model_quantize quantizes and how. Fill it with mq_model_config_init, then change what
 * you need. The strings and the skip array are read during each call that takes the config and
 * never kept. */
typedef struct mq_model_config {
    uint32_t size;       /* sizeof(mq_model_config), set by _init; checked by every call */
    uint32_t version;    /* MQ_MODEL_CONFIG_VERSION, set by _init; checked by every call */
    int32_t bits;        /* 8: INT8 per-channel symmetric (default); 4: INT4 group-wise symmetric,
                            the engine's default group size (mq_defaults_json); 16: FP16 (BF16
                            when bf16 is non-zero). Of `spec`, only scheme, group_size (0: the
                            default), qdtype and nonfinite then apply.
                            0: `spec` is used whole, format included. Other values: MQ_EINVAL. */
    int32_t bf16;        /* with bits 16: BF16 instead of FP16 */
    mq_config spec;      /* tensor-level settings (mq_config_init defaults, set by _init); the
                            channel axis is chosen per layer */
    uint32_t layers;     /* mq_layer_type bitmask; default MQ_LAYER_DEFAULT; 0 is MQ_EINVAL */
    const char* const* skip; /* n_skip patterns of modules or tensors to leave alone, in the one
                            match syntax of every caller (docs/RECIPES.md): a name selects that
                            module and everything below it ("encoder", "fc.weight"); "*", "?"
                            and "[...]" match over whole dotted names ("classifier.*",
                            "*.lm_head"); may be NULL when n_skip is 0; an empty or malformed
                            pattern is MQ_EINVAL */
    size_t n_skip;
    int32_t mode;        /* mq_mode; default MQ_MODE_WEIGHT_ONLY */
    const char* observer;/* static mode's activation observer: "minmax", "moving_average" or
                            "histogram"; NULL means "histogram" (torch's x86 default) */
    const mq_observer_config* activation_observer; /* static mode: NULL, or the activation
                            observer with torch's constructor arguments (a per-tensor kind:
                            minmax, moving average or histogram; filled by
                            mq_observer_config_init and edited); it replaces `observer` whole.
                            Read during the call only. Options torch would refuse, or a
                            per-channel kind, are MQ_EINVAL. */
    /* ---- version 2 ---- */
    const char* recipe_json; /* NULL, or per-layer rules as JSON (docs/RECIPES.md): an ordered
                            list, first match wins, e.g. {"rules": [{"match": "blocks.*.fc2",
                            "bits": 4, "group_size": 32}, {"match": "head", "skip": true}]}.
                            The fields above are the base the rules start from; skip patterns
                            come before the rules. A bad recipe is MQ_EINVAL naming the rule. */
    const char* activations; /* NULL (the engine's default: "static" once mq_model_calibrate_begin
                            was called, else "dynamic" for INT8 and "none" for the others),
                            "none" (weight-only), "dynamic" (per batch at run time) or "static" */
    const char* method;      /* NULL (the default, "rtn": round to nearest) or a weight method
                            this library knows (mq_defaults_json lists them) */
    int32_t group_fallback;  /* mq_group_fallback */
    const char* options_json;/* NULL, or the call's options by name as a JSON object, for callers
                            that work with names (the Python package): the keys of a recipe rule
                            (bits, dtype, group_size, group_fallback, scheme, activations, observer,
                            method) plus "layers" (["linear", ...]), "skip" (patterns) and
                            "nonfinite" ("reject" or "clamp"), and "tied" ({"alias": "name"}
                            for tensors that are one storage: stored once, docs/HF-FOLDERS.md).
                            When set, it replaces bits, bf16,
                            spec, layers, skip, mode, observer, activations, method and
                            group_fallback above; absent keys take the engine's defaults. Unknown
                            keys and bad values are MQ_EINVAL naming them. */
    const char* recipe_file; /* NULL, or the path of a recipe file (JSON, at most 4 MiB, a regular
                            file) instead of recipe_json; giving both is MQ_EINVAL */
    int32_t no_log;          /* non-zero: mq_quantize_file and mq_model_quantize do not record
                            the run in the run log
                            ($MONOQUANT_HOME/runs.sqlite, docs/RUNLOG.md; MONOQUANT_LOG=0 turns it
                            off for the whole process). A log that cannot be written never fails
                            the call. */
    const char* entry_point; /* NULL ("c"), or the name a binding records its runs under
                            ("python") */
    int32_t validate;        /* non-zero: mq_quantize_file reopens dst once written and checks it,
                            as `monoquant quantize` does: every tensor present with its planned
                            dtype and shape, kept tensors byte-identical, each quantized tensor's
                            SQNR recomputed from the file and Linear/Conv2d outputs compared. The
                            report then holds "validation". An output that fails is removed and
                            the call returns MQ_EIO naming the check. Costs a second read of
                            dst (about the time of the write). */
    int32_t outliers;        /* non-zero: LLM.int8() outlier handling (docs/methods.md) for INT8
                            Linear layers with dynamic or static activations: input features whose
                            magnitude reaches outlier_threshold run through the matmul in float.
                            Static layers find them during mq_model_calibrate and the output
                            stores them (<weight>.outlier_columns / .outlier_weight,
                            docs/FORMAT.md); dynamic layers find them per batch at run time.
                            Other formats or activations none: MQ_EINVAL. */
    double outlier_threshold;/* 0: the engine's default (6.0, mq_defaults_json); > 0 sets it and
                            turns outliers on; negative, NaN or infinite: MQ_EINVAL */
} mq_model_config;

/* Fills *cfg with the defaults (INT8 per-channel, the default layers, no skips, weight only) and
 * sets size and version. MQ_EINVAL if cfg is NULL. */
MQ_API int mq_model_config_init(mq_model_config* cfg);

/* Progress of mq_model_quantize, called once per tensor of the input, in file order, on the
 * calling thread: tensors and input bytes done so far and in all. Return 0 to go on, non-zero to
 * cancel: mq_model_quantize then returns MQ_ECANCELED and no model. It must not call functions
 * on the model being quantized (they fail with MQ_EINVAL); other handles are fine. */
typedef int (*mq_progress_fn)(uint64_t tensors_done, uint64_t tensors_total, uint64_t bytes_done,
                              uint64_t bytes_total, void* user);

/* Creates an empty float model in *out (NULL on failure). MQ_EINVAL if out is NULL. */
MQ_API int mq_model_new(mq_model** out);

/* Reads a whole checkpoint into a new model in *out (NULL on failure): .safetensors, a sharded
 * *.safetensors.index.json, torch.save files (.pt/.pth/.bin: a state_dict, nested containers or a
 * pickled nn.Module, whose module classes are kept for layer detection), chosen by content. The
 * tensors are copied into the model; the file is closed before the call returns. Pickles are
 * never executed: a file that would run code fails with MQ_EFORMAT naming the global. A file
 * monoquant quantized loads as a quantized model (see mq_model_dequantize). A Hugging Face model
 * folder loads its weights: model.safetensors, the index of its shards, pytorch_model.bin (or
 * the folder's one *.safetensors), as mq_quantize_file writes a folder for a folder.
 * Fails with MQ_EINVAL for NULL out/path, MQ_EIO when the file cannot be opened or read (missing,
 * no permission, a folder without weights), MQ_EFORMAT when its content is corrupt, malicious or not a checkpoint, and
 * MQ_EUNSUPPORTED for valid content this library does not handle; the message names the file and
 * the problem. */
MQ_API int mq_model_load(mq_model** out, const char* path);

/* Appends a tensor named `name` (unique, non-empty; the order of the calls is the file order).
 * Any dtype. BORROWED: contiguous data (strides NULL or the row-major ones) is NOT copied; the
 * model keeps a pointer to it, so the caller's buffer must stay valid and unchanged until
 * mq_model_free of this model (models made from it by mq_model_quantize own their data and do
 * not need it). Strided data is copied once.
 * MQ_EINVAL for a NULL/empty name, a duplicate name, NULL data with elements, a quantized model;
 * MQ_EDTYPE / MQ_ESHAPE as for the tensor functions. */
MQ_API int mq_model_add_tensor(mq_model* m, const char* name, const mq_tensor* t);

/* Records the torch class of the module at `path` ("" for the root; "features.0"), full
 * ("torch.nn.modules.conv.Conv2d") or short ("Conv2d"), so layer types come from classes rather
 * than from tensor names and shapes. MQ_EINVAL for NULL path/class_name, an empty class name or
 * a quantized model. */
MQ_API int mq_model_set_module_type(mq_model* m, const char* path, const char* class_name);

/* Sets a metadata entry (a string) that saved files carry (safetensors __metadata__; the .pt
 * metadata). MQ_EINVAL for NULL key/value, the reserved key "monoquant" or a quantized model. */
MQ_API int mq_model_set_metadata(mq_model* m, const char* key, const char* value);

/* Static mode: starts calibration for the layers cfg would quantize, one activation observer per
 * layer (forgetting any earlier calibration). cfg must have mode MQ_MODE_STATIC and must be
 * the config later given to mq_model_quantize. MQ_EINVAL for a bad config (the message names
 * the field), a weight-only config, a quantized model, or nothing to quantize. */
MQ_API int mq_model_calibrate_begin(mq_model* m, const mq_model_config* cfg);

/* Feeds one batch of the input activations of `layer` (a module path as in the report, e.g.
 * "classifier.1") to its observer. Float dtypes only (MQ_EDTYPE). The tensor is read during the
 * call only. MQ_EINVAL for NULL layer/activation, no mq_model_calibrate_begin before, a layer the
 * config does not quantize (the message lists the quantized ones) or a batch the observer refuses;
 * MQ_ENONFINITE for a batch holding NaN (or +-Inf for the min/max observers). A refused batch is
 * not observed and the message says why. */
MQ_API int mq_model_calibrate(mq_model* m, const char* layer, const mq_tensor* activation);

/* Quantizes the float model m with cfg into a NEW quantized model in *out (NULL on failure); m is
 * unchanged and stays usable. progress may be NULL; user is passed to it as is. In static mode
 * the observers fed by mq_model_calibrate give the activation qparams.
 * Fails with MQ_EINVAL for NULL cfg/out, a bad config (size, version or a field: the message
 * names it), a quantized m, nothing to quantize (no tensor of the selected layer types left after
 * the skips), static mode without mq_model_calibrate_begin and data for a layer, or a weight that
 * does not fit the spec; MQ_ENONFINITE when a weight holds NaN/Inf (see spec.nonfinite);
 * MQ_ECANCELED when progress returned non-zero.
 * The run is recorded in the run log (see "Run log" below; cfg.no_log and MONOQUANT_LOG=0 turn it
 * off) with the state-dict fingerprint of m as its input identity and, in static mode, the
 * fingerprint of the activations given to mq_model_calibrate; the new model's report
 * (mq_model_report_json) holds its "run_id" (0 when not recorded) and "log_warning". */
MQ_API int mq_model_quantize(mq_model* m, const mq_model_config* cfg, mq_progress_fn progress,
                             void* user, mq_model** out);

/* One output buffer of mq_model_quantize_into: the tensor's name (as the layout gives it, for a
 * check), caller memory for its bytes, and their count (the layout's nbytes). */
typedef struct mq_output {
    const char* name;
    void* data;      /* may be NULL only when nbytes is 0 */
    uint64_t nbytes;
} mq_output;

/* The tensors mq_model_quantize(m, cfg) would produce, in order, as a JSON array of
 * {"name", "dtype" (an mq_dtype), "shape", "nbytes"}: every tensor of m in its order, a quantized
 * one as <name> (int8, or packed uint8 for INT4), <name>.scale and, when the scheme stores one,
 * <name>.zero_point. The engine decides these; a caller allocates nbytes for each and calls
 * mq_model_quantize_into. Buffer convention as mq_model_metadata_json. Fails as
 * mq_model_plan_json. */
MQ_API int mq_model_output_layout_json(mq_model* m, const mq_model_config* cfg, char* buf,
                                       size_t cap, size_t* len);

/* mq_model_quantize writing the quantized model straight into the caller's memory: outputs holds
 * one mq_output per tensor of mq_model_output_layout_json(m, cfg), in that order. The engine
 * writes each tensor into its buffer (large tensors a block of rows at a time, so the call adds a
 * few blocks to the outputs, never a copy of a tensor) and the new model *out reads those buffers
 * in place: they are borrowed, as by mq_model_add_tensor, and must stay valid and unchanged until
 * mq_model_free(*out). Fails like mq_model_quantize, and with MQ_EINVAL when n_outputs is not the
 * layout's count, a name differs from the layout's or data is NULL, MQ_EBUFFER when an nbytes is
 * not the tensor's size. After a failed call the buffers' content is unspecified. */
MQ_API int mq_model_quantize_into(mq_model* m, const mq_model_config* cfg, mq_progress_fn progress,
                                  void* user, const mq_output* outputs, size_t n_outputs,
                                  mq_model** out);

/* What mq_model_quantize_stream tells its caller about an input tensor of m. */
typedef enum mq_stream_event {
    MQ_STREAM_WRITTEN = 1,  /* every output of the tensor is complete in its caller buffer */
    MQ_STREAM_RELEASED = 2  /* the engine reads the tensor no more: its memory may be freed */
} mq_stream_event;

/* Called by mq_model_quantize_stream on the calling thread with an mq_stream_event, the input
 * tensor's name (valid during the call only) and the user pointer; non-zero stops the run
 * (MQ_ECANCELED). */
typedef int (*mq_stream_fn)(int32_t event, const char* name, void* user);

/* mq_model_quantize_into telling on_event, as it goes, about each input tensor of m, so a caller
 * can use each layer as soon as its outputs are written and free each input as soon as the
 * engine is done with it (Python's quantize(inplace=True) swaps in every quantized layer and
 * frees its float weight during the call, so the peak stays near the quantized size):
 * MQ_STREAM_WRITTEN once every output of the tensor is complete (tied aliases, which store
 * nothing, are not told), in the layout's order; MQ_STREAM_RELEASED once neither the
 * quantization nor the run log's fingerprint of m will read the tensor again (tensors still held
 * when the call returns are not told: they may all be freed after it). With a recipe that folds
 * (BatchNorm into the layer before it), no tensor is told RELEASED. on_event may be NULL (then
 * this is mq_model_quantize_into). Once the call is made, m's tensors may have been freed: any
 * later call on m but mq_model_free fails with MQ_EINVAL. Fails like mq_model_quantize_into;
 * MQ_ECANCELED when on_event returned non-zero. */
MQ_API int mq_model_quantize_stream(mq_model* m, const mq_model_config* cfg, mq_progress_fn progress,
                                    void* user, const mq_output* outputs, size_t n_outputs,
                                    mq_stream_fn on_event, mq_model** out);

/* Writes every tensor and the metadata to `path`, the format chosen by its suffix: .safetensors,
 * or .pt/.pth/.bin (torch.save's zip format, loadable with torch.load(weights_only=True)).
 * Atomic: the data goes to a temporary file in the same folder, is fsynced and renamed over
 * path, so a failed or killed save leaves the old file or none. On Linux file systems with
 * O_TMPFILE (ext4, xfs, btrfs, tmpfs) the temporary file has no name until the rename, so even
 * a SIGKILLed save leaves nothing else in the folder. MQ_EINVAL for a NULL path or an
 * unknown suffix, MQ_EIO when writing fails (the message names the file). */
MQ_API int mq_model_save(mq_model* m, const char* path);

/* The number of tensors in *count (for a quantized model: the stored tensors, scales and zero
 * points included). */
MQ_API int mq_model_tensor_count(mq_model* m, size_t* count);

/* Describes a tensor in the order of the model. */
typedef struct mq_tensor_info {
    const char* name;            /* owned by the model: valid until mq_model_free */
    int32_t dtype;               /* an mq_dtype */
    int32_t ndim;
    int64_t shape[MQ_MAX_DIMS];  /* ndim sizes; the rest 0 */
    uint64_t nbytes;             /* bytes mq_model_tensor_read writes (INT4 values: packed) */
} mq_tensor_info;

/* Describes tensor i (0 .. count-1) in *info. MQ_EINVAL for NULL info or i out of range,
 * MQ_EUNSUPPORTED for a loaded tensor with more than MQ_MAX_DIMS dimensions. */
MQ_API int mq_model_tensor_info(mq_model* m, size_t i, mq_tensor_info* info);

/* Copies the tensor named `name` (row-major, little-endian) into buf, which holds `bytes` bytes.
 * MQ_EINVAL for a NULL name, an unknown name or a NULL buf for a non-empty tensor; MQ_EBUFFER when
 * bytes < the tensor's nbytes. */
MQ_API int mq_model_tensor_read(mq_model* m, const char* name, void* buf, size_t bytes);

/* The model's metadata as a JSON object of strings ({"monoquant": "<config JSON>", ...} for a
 * quantized model), NUL-terminated. *len is set to its length without the NUL; if cap < *len + 1
 * nothing is written and the call returns MQ_EBUFFER, so (m, NULL, 0, &len) asks for the length.
 * MQ_EINVAL for NULL len, or a NULL buf with cap > 0. */
MQ_API int mq_model_metadata_json(mq_model* m, char* buf, size_t cap, size_t* len);

/* The report of the mq_model_quantize call that made m, as JSON: total_bytes_before/after,
 * bits_per_weight, sqnr_db (overall; "inf" for an exact round trip, null when undefined),
 * tensors_quantized, tensors_kept, "tensors" (per tensor: name, layer, layer_type, format,
 * sqnr_db, bytes_before/after, ...), "warnings" (code, message) and, in static mode,
 * "activations" (per layer scale and zero point). Buffer convention as mq_model_metadata_json.
 * MQ_EINVAL for a model that no mq_model_quantize call made (built or loaded: no report). */
MQ_API int mq_model_report_json(mq_model* m, char* buf, size_t cap, size_t* len);

/* Dequantizes the quantized model m into a NEW float32 model in *out (NULL on failure): every
 * quantized tensor back as (q - zero_point) * scale in its original shape, the scales and zero
 * points gone, the other tensors as they are. MQ_EINVAL for NULL out or a model that is not
 * quantized; MQ_EFORMAT for a loaded quantized checkpoint that is inconsistent. */
MQ_API int mq_model_dequantize(mq_model* m, mq_model** out);

/* The tensors mq_model_dequantize(m) would produce, in order, as JSON in the format of
 * mq_model_output_layout_json. MQ_EINVAL for a model that is not quantized, MQ_EFORMAT for an
 * inconsistent one. */
MQ_API int mq_model_dequantize_layout_json(mq_model* m, char* buf, size_t cap, size_t* len);

/* mq_model_dequantize writing the float model straight into the caller's memory: outputs holds
 * one mq_output per tensor of mq_model_dequantize_layout_json(m), in order (float32 tensors are
 * dequantized in place, the others copied once into their buffer), and *out reads those buffers
 * in place (borrowed until mq_model_free(*out), as with mq_model_quantize_into). Fails like
 * mq_model_dequantize, and like mq_model_quantize_into for the outputs. */
MQ_API int mq_model_dequantize_into(mq_model* m, const mq_output* outputs, size_t n_outputs,
                                    mq_model** out);

/* What the engine would do with m under cfg, as JSON, without quantizing: "tensors" (per input
 * tensor: name, dtype, shape, layer, layer_type, action "quantize" or "keep", reason, rule (the
 * index of the deciding rule in "recipe", -1 for none), config (the file config entry of a
 * quantized tensor: format, scheme, granularity, axis, group_size, qdtype, activations, method),
 * stored (the output tensors with name, dtype and shape), bytes, bytes_after), "layers" (name,
 * type, activations, observer), "recipe" (the resolved recipe: the skips, the recipe's rules and
 * cfg's own options as the last rule, every default filled in), "warnings", "bytes_before",
 * "bytes_after" (the projected size) and "config" (what the output file's config will hold).
 * Buffer convention as mq_model_metadata_json. MQ_EINVAL for a bad config or recipe (the message
 * names the option or the rule) or nothing to quantize, as mq_model_quantize would fail. */
MQ_API int mq_model_plan_json(mq_model* m, const mq_model_config* cfg, char* buf, size_t cap,
                              size_t* len);

/* mq_model_plan_json for a checkpoint file, reading only its list of tensors (and module classes),
 * never the weights: what mq_quantize_file would do with it. Fails like mq_model_load for src
 * and like mq_model_plan_json for cfg; MQ_EFORMAT for a file monoquant already quantized. */
MQ_API int mq_plan_file_json(const char* src, const mq_model_config* cfg, char* buf, size_t cap,
                             size_t* len);

/* Quantizes the checkpoint file `src` into a new file `dst` under cfg, streaming tensor by tensor
 * (peak memory about one tensor), like llama.cpp's llama_model_quantize: the same pipeline, and
 * the same bytes, as `monoquant quantize` and Python's monoquant.quantize_file. src is any file
 * mq_model_load reads; dst's suffix picks the format (.safetensors, or .pt/.pth/.bin); dst is
 * written atomically (nothing appears there on failure) and may not be src. calibration is NULL,
 * or a file of recorded activations (layer name, or "<layer>.<batch>" -> input tensor: what
 * monoquant.record_activations writes) for static activations. progress/user as for
 * mq_model_quantize. report may be NULL; else *report receives the run's report (free it with
 * mq_report_free), NULL on failure; the report's "run_id" is the run's id in the run log (0 when
 * not recorded) and "log_warning" says why a run could not be recorded.
 * Fails like mq_model_load for src and calibration, with MQ_EINVAL for a bad config, MQ_EIO when
 * dst cannot be written, MQ_ENONFINITE for NaN/Inf in a weight and MQ_ECANCELED when progress
 * returned non-zero. */
MQ_API int mq_quantize_file(const char* src, const char* dst, const mq_model_config* cfg,
                            const char* calibration, mq_progress_fn progress, void* user,
                            mq_report** report);

/* mq_quantize_file, also stopped by the caller's cancel flag: once *cancel becomes non-zero (set
 * it from another thread or from a signal handler: a plain store, nothing else to call) the
 * engine stops at the next block of about 8 MiB of input (it reads the flag every 10 ms and
 * checks between blocks and between tensors), removes what it wrote and returns MQ_ECANCELED;
 * dst is not created. A flag set after the output was committed does not undo it: the call
 * returns MQ_OK. cancel may be NULL (then this is mq_quantize_file). The flag is read during
 * the call only. */
MQ_API int mq_quantize_file_cancelable(const char* src, const char* dst, const mq_model_config* cfg,
                                       const char* calibration, mq_progress_fn progress,
                                       void* user, const volatile int32_t* cancel,
                                       mq_report** report);

/* The report as JSON (the format of mq_model_report_json). Buffer convention as
 * mq_model_metadata_json. MQ_EHANDLE for a bad handle. */
MQ_API int mq_report_json(mq_report* r, char* buf, size_t cap, size_t* len);

/* Frees a report. Accepts NULL (MQ_OK) and a stale or already-freed handle (MQ_EHANDLE). */
MQ_API int mq_report_free(mq_report* r);

/* Parallel conversion of a sharded model folder (a Hugging Face folder whose weights are behind a
 * *.safetensors.index.json): the work of mq_quantize_file(src, dst, ...) split by output shard,
 * so that processes sharing a filesystem each write some shards; the output folder is the same,
 * byte for byte. The engine decides which tensors go to which shard; callers only fan out:
 *
 *   mq_quantize_shards_begin(src, dst, cfg, cal, buf, cap, &len)  once: the JSON list of shard
 *                                                                  file names; dst prepared
 *   mq_quantize_shard(src, dst, cfg, cal, k, &rep)                 once per shard k, anywhere
 *   mq_quantize_shards_finish(src, dst, cfg, cal, reports, &rep)   once, after all of them
 *   mq_quantize_shards_abort(dst)                                  instead of finish on failure
 *
 * Every call takes the same src, dst, cfg and calibration. */

/* Lists the output shard files (a JSON list of names, "[]" when src is not a sharded model folder:
 * then use mq_quantize_file) and, when there are some, makes dst (an existing folder must be
 * empty). Buffer convention as mq_model_metadata_json; on MQ_EBUFFER (a length query) nothing is
 * prepared. Fails like mq_quantize_file for src, cfg and dst. */
MQ_API int mq_quantize_shards_begin(const char* src, const char* dst, const mq_model_config* cfg,
                                    const char* calibration, char* buf, size_t cap, size_t* len);

/* Quantizes the tensors of shard k (of begin's list) into dst/<name> (atomically). *report
 * receives the shard's report (free it with mq_report_free; pass its mq_report_json to finish).
 * MQ_EINVAL for k out of range or a NULL report; otherwise fails like mq_quantize_file. */
MQ_API int mq_quantize_shard(const char* src, const char* dst, const mq_model_config* cfg,
                             const char* calibration, size_t k, mq_report** report);

/* Writes the index and the input folder's other files once every shard is written, checks the
 * output when cfg->validate is set and records the run (cfg->no_log as for mq_quantize_file).
 * reports_json is the JSON list of the shards' reports (mq_report_json of each). report may be
 * NULL; else *report receives the whole run's report, as mq_quantize_file's. MQ_EIO when a shard
 * is missing (the message names it). */
MQ_API int mq_quantize_shards_finish(const char* src, const char* dst, const mq_model_config* cfg,
                                     const char* calibration, const char* reports_json,
                                     mq_report** report);

/* Removes what a failed parallel conversion wrote into dst (dst was empty at begin) and dst itself
 * when it is then empty. MQ_EINVAL for a NULL dst. */
MQ_API int mq_quantize_shards_abort(const char* dst);

/* Dequantizes the quantized checkpoint `src` (a file, a sharded *.safetensors.index.json, or a
 * model folder that mq_quantize_file wrote) into `dst`: the same pipeline, and the same bytes, as
 * `monoquant dequantize` and Python's monoquant.dequantize_file. Every quantized tensor becomes
 * one tensor of its original shape and dtype under its own name (its .scale / .zero_point go),
 * tied names the file stores once are written again, the other tensors are copied, and the
 * "monoquant" metadata is dropped. For a file, dst's suffix picks the format (.safetensors, or
 * .pt/.pth/.bin) and dst is written atomically. For a model folder, dst is a folder (made if
 * missing; an existing one must be empty) laid out as src: the same weight file names (the same
 * shard files and index, each tensor in the shard its stored tensor was in) and every other file
 * (config.json, tokenizer files, ...) copied; nothing is left there on failure. dst may not be
 * src or one of its files. progress/user as for mq_model_quantize (one call per input tensor).
 * Fails like mq_model_load for src, with MQ_EFORMAT for a checkpoint monoquant did not quantize,
 * MQ_EINVAL when dst is src (or one of its files) or a folder that is not empty, MQ_EIO when dst
 * cannot be written, and MQ_ECANCELED when progress returned non-zero. */
MQ_API int mq_dequantize_file(const char* src, const char* dst, mq_progress_fn progress, void* user);

/* The engine's defaults as JSON: bits, group_size, scheme, observer, method, the default
 * activation mode per format, the default layer types, the methods and observers this library
 * knows, its version, the quantized format's metadata key and format version, and "suffixes":
 * the names a quantized tensor <name> stores its parts under, after <name> ({"scale": ".scale",
 * "zero_point": ".zero_point", "outlier_columns": ..., "outlier_weight": ...}; docs/FORMAT.md).
 * Callers show these; they never repeat them. Buffer convention as mq_model_metadata_json. */
MQ_API int mq_defaults_json(char* buf, size_t cap, size_t* len);

/* Frees the model and everything it owns (tensor names included). Accepts NULL (MQ_OK, no-op) and
 * a stale or already-freed handle (MQ_EHANDLE, nothing else happens). Borrowed caller buffers
 * may be released once this returns. Waits for a call running on the same handle in another
 * thread. */
MQ_API int mq_model_free(mq_model* m);

/* Bump when fields are added; the library accepts structs of any version it knows. */
#define MQ_HESSIAN_VERSION 1

/* A layer's input Hessian for method "gptq" (docs/methods.md): H = sum over the calibration
 * inputs x (rows of the layer's input, [K] each) of x^T x, a [K, K] matrix where K is the number
 * of inputs of the layer's weight viewed as [rows, K] (in_features for a Linear; in_channels/groups
 * x kernel size for a Conv2d, the columns of its unfolded input). Any overall scale is fine (the
 * paper averages; a plain sum gives the same result). Fill it with mq_hessian_init. */
typedef struct mq_hessian {
    uint32_t size;     /* sizeof(mq_hessian), set by mq_hessian_init; checked */
    uint32_t version;  /* MQ_HESSIAN_VERSION, set by mq_hessian_init; checked */
    mq_tensor matrix;  /* [K, K], a float dtype (F32 is read in place; the others are converted
                          when the layer is quantized) */
} mq_hessian;

/* Fills *h with an empty matrix and sets size and version. MQ_EINVAL if h is NULL. */
MQ_API int mq_hessian_init(mq_hessian* h);

/* Gives the input Hessian of `layer` (a module path as in the plan, e.g. "encoder.0.fc1") for
 * mq_model_quantize with method "gptq"; h NULL removes it. BORROWED like mq_model_add_tensor:
 * contiguous data is not copied, and the caller's buffer must stay valid and unchanged until
 * mq_model_free of this model or the next mq_model_set_hessian of the layer; strided data is
 * copied once. The size is checked against the layer's weight when it is quantized: a gptq layer
 * without a Hessian, or with one of the wrong size, fails mq_model_quantize with MQ_EINVAL naming
 * the layer and the [K, K] it needs. A singular Hessian (inputs that never fired, fewer samples
 * than inputs) is damped as in the paper and reported as a "hessian_damped" warning.
 * MQ_EINVAL for a NULL/empty layer, a struct of unknown size or version, a matrix that is not
 * 2-D and square, or a quantized model; MQ_EDTYPE for a non-float matrix. */
MQ_API int mq_model_set_hessian(mq_model* m, const char* layer, const mq_hessian* h);

/* Makes the float model m (tensors added with mq_model_add_tensor) a quantized model whose
 * config is config_json, the value of the "monoquant" metadata key (docs/FORMAT.md): the stored
 * values and qparams are m's tensors. The config is checked against the tensors as every reader
 * of a quantized file checks it (dtypes, shapes, scales, zero points, aliases); m is then
 * read-only, and mq_model_save writes it. A caller holding a quantized model in its own form
 * (Python's modules, after later changes) saves it this way. MQ_EINVAL for NULL config_json or a
 * quantized m; MQ_EFORMAT for a config that does not match the tensors (m is unchanged). */
MQ_API int mq_model_set_config(mq_model* m, const char* config_json);

/* Opens a quantized checkpoint (a file monoquant wrote) as a read-only quantized model without
 * reading its tensors into memory: the config, scales and zero points are checked as by
 * mq_model_load, and mq_model_tensor_read then copies each tensor straight from the file into
 * the caller's buffer (a loader holds the tensors once, in its own memory). The file must stay
 * as it is until mq_model_free, which closes it; a file truncated meanwhile makes reads fail
 * with MQ_EIO (never a crash). Errors as mq_model_load; a float checkpoint is MQ_EFORMAT. */
MQ_API int mq_model_open(mq_model** out, const char* path);

/* --------------------------------------------------------------------------------------------------
 * Search: evolve per-layer recipes toward the Pareto front of the caller's objectives (an ask/tell
 * NSGA-II engine; docs/SEARCH.md). The caller asks for a candidate recipe, quantizes it (e.g.
 * cfg.recipe_json and mq_model_quantize), measures it, and tells the objectives back. The same
 * space, seed and sequence of calls give the same candidates. A handle is not for concurrent use
 * by design of the algorithm, but calls on it are serialised like a model's.
 *
 * The space is JSON: {"layers": [{"name", "params", "row", "sensitivity"}, ...],
 * "objectives": [{"name": "metric", "goal": "max"}, {"name": "size", "goal": "min"}, ...],
 * and optionally "formats" (of skip, fp16, bf16, int8, int4), "group_sizes", "schemes",
 * "methods", "limits" ([{"match": "head", "min_bits": 8}, {"match": "...", "formats": [...]}]),
 * "population", and the pruning genes: "prunes" (of "none", "2:4", "magnitude:<sparsity>") and,
 * for layers that name the layer they feed ({"name": "fc1", "into": "fc2", "units": 64, ...}),
 * "unit_fractions" (default 0, 0.125, 0.25, 0.5: candidates then carry prune_units; see
 * mq_prune_units). Common failures: MQ_EHANDLE for a NULL, stale, freed or non-search handle.
 * ------------------------------------------------------------------------------------------------ */

typedef struct mq_search mq_search;

/* Starts a search over the space described by space_json, deterministic for seed. *out receives
 * the handle (free it with mq_search_free), NULL on failure. MQ_EINVAL for NULL arguments or a bad
 * space (the message names the key, layer or limit), including a space with no valid recipe. */
MQ_API int mq_search_new(const char* space_json, uint64_t seed, mq_search** out);

/* Resumes a search from the state mq_search_save_json wrote (pending trials stay pending).
 * MQ_EINVAL for NULL arguments or a state that is not one. */
MQ_API int mq_search_load(const char* state_json, mq_search** out);

/* The next candidate: *trial receives its id, buf its recipe as JSON (one exact rule per layer of
 * the space with every option set, then {"match": "*", "skip": true}), usable as
 * mq_model_config.recipe_json. Buffer convention as mq_model_metadata_json; on MQ_EBUFFER the
 * candidate is kept and the next call returns it again (with the same *trial). Several candidates
 * may be asked before any is told. MQ_EINVAL for NULL trial or len. */
MQ_API int mq_search_ask(mq_search* s, int64_t* trial, char* buf, size_t cap, size_t* len);

/* Tells the objectives of a trial: n values in the space's order of objectives. MQ_ENONFINITE for
 * a NaN or infinite value (the message names the objective); MQ_EINVAL for a wrong count, an
 * unknown trial or one already told or failed. On failure the trial stays pending. */
MQ_API int mq_search_tell(mq_search* s, int64_t trial, const double* values, size_t n);

/* Marks a trial failed (it could not be evaluated); reason (may be NULL) is kept in its record.
 * MQ_EINVAL for an unknown trial or one already told or failed. */
MQ_API int mq_search_fail(mq_search* s, int64_t trial, const char* reason);

/* The Pareto front so far as a JSON list of results (trial, recipe, status, objectives by name,
 * bits_per_weight), in trial order. Buffer convention as mq_model_metadata_json. */
MQ_API int mq_search_front_json(mq_search* s, char* buf, size_t cap, size_t* len);

/* Every trial so far (pending and failed ones too, failed with "error") as a JSON list like
 * mq_search_front_json's. Buffer convention as mq_model_metadata_json. */
MQ_API int mq_search_trials_json(mq_search* s, char* buf, size_t cap, size_t* len);

/* The whole state of the search as JSON, for mq_search_load. Buffer convention as
 * mq_model_metadata_json. */
MQ_API int mq_search_save_json(mq_search* s, char* buf, size_t cap, size_t* len);

/* Frees the search. Accepts NULL (MQ_OK) and a stale or already-freed handle (MQ_EHANDLE). */
MQ_API int mq_search_free(mq_search* s);

/* Structured pruning (core/prune): the hidden units that stay when `fraction` (0 <= fraction < 1)
 * of the units between two coupled layers are removed — the recipe key "prune_units" with "into".
 * w1 is the first layer's weight, whose dim 0 is the hidden units (a Linear's [hidden, in], a
 * Conv2d's [hidden, in, kh, kw]); b1 its bias [hidden] or NULL; w2 the second layer's weight, whose
 * dim 1 is the hidden units ([out, hidden] or [out, hidden, kh, kw]). A unit's importance is
 * ||(w1[j], b1[j])|| * ||w2[:, j]||; the least important round(fraction * hidden) go (of two equal,
 * the lower index), at least one stays. Writes the kept indices, increasing, to keep (room for cap)
 * and their count to *n_keep. The caller shrinks both layers (w1's rows and b1, w2's dim 1): the
 * file pipeline (mq_quantize_file) refuses recipes with prune_units. MQ_EBUFFER (with *n_keep set)
 * when cap is too small; MQ_ESHAPE when the shapes are not coupled; MQ_EINVAL for a fraction out
 * of range, a non-finite weight or NULL arguments. */
MQ_API int mq_prune_units(const mq_tensor* w1, const mq_tensor* b1, const mq_tensor* w2, double fraction,
                          int64_t* keep, size_t cap, size_t* n_keep);

/* A/B/n decision (core/abtest; docs/SEARCH.md): given each candidate's repeated measurements, the
 * bootstrap confidence interval of each one's statistic and a winner only when the interval of
 * its difference with every other candidate excludes 0 — the one rule behind Python's
 * monoquant.benchmark and `monoquant bench`. request_json: {"objective": "latency" (for the
 * verdict), "stat": "median"|"mean", "goal": "min"|"max", "samples": [{"name", "values": [...]},
 * ...] (at least two candidates of at least two finite values), "seed", "boot" (default 2000),
 * "alpha" (default 0.05), "paired" (value i of every candidate measured on the same input i)}.
 * buf receives {"objective", "stat", "goal", "confidence", "paired", "estimates": [{"name", "n",
 * "value", "ci_low", "ci_high", "p90"}], "best", "differences": [{"other", "value", "ci_low",
 * "ci_high", "significant"}], "winner" ("" when none), "verdict"}. The same request gives the
 * same answer. Buffer convention as mq_model_metadata_json. MQ_EINVAL for a NULL request or len,
 * or a request that cannot be decided (the message names the key or candidate). */
MQ_API int mq_abtest_json(const char* request_json, char* buf, size_t cap, size_t* len);

/* The layers of a search space for a plan (plan_json: a plan as mq_model_plan_json or
 * mq_plan_file_json gives it): one per layer with a tensor the plan quantizes, in plan order,
 * {"name", "params" (its quantized weights' count), "row" (the greatest common divisor of their
 * row lengths)} — the "layers" of mq_search_new's space. Buffer convention as
 * mq_model_metadata_json. MQ_EINVAL for NULL arguments, a plan that is not JSON or one that
 * quantizes nothing. */
MQ_API int mq_search_layers_json(const char* plan_json, char* buf, size_t cap, size_t* len);
/* ==================================================================================================
 * Run log
 *
 * Every quantization is recorded in the run log, a SQLite file: $MONOQUANT_HOME/runs.sqlite, else
 * $XDG_DATA_HOME/monoquant/runs.sqlite, else ~/.local/share/monoquant/runs.sqlite (docs/RUNLOG.md).
 * mq_quantize_file and mq_model_quantize record their runs unless cfg.no_log is set or the
 * process environment has MONOQUANT_LOG=0 (also false, off, no); a log that cannot be written
 * never fails them. The functions below read the log back, compare and reproduce runs and attach
 * metrics. They take no handle: each call opens the log, works and closes it, so they may run
 * from any thread and any process at once (writers wait for each other).
 *
 * A run is a JSON object, the same `monoquant runs show --json` prints: id, uuid, started,
 * duration_ns, host, versions (monoquant, go, and what mq_runlog_set_version added), entry_point
 * ("cli", "c", "python", "python.quantize", "search", ...), settings (what the run was asked:
 * options, output_format, calibration, recipe: enough to run it again), config (the resolved
 * per-tensor config it applied), input {path, xxh3, sha256, bytes}, output {path, xxh3, sha256,
 * bytes}, calibration {path, xxh3 or sha256, count, shapes} or absent: a file is identified by
 * its XXH3-128 (32 hex digits, as `xxhsum -H2` prints it), and its sha256 is "" until
 * `monoquant runs show --sha256 ID` adds it (runs recorded before the log's schema 2 have only
 * the sha256); an in-memory model has no path and its state-dict fingerprint as sha256
 * (docs/RUNLOG.md); layers (per quantized tensor: name, layer,
 * layer_type, format, kernel, sqnr_db, bytes_before, bytes_after), results (whole-model numbers),
 * warnings, peak_rss_bytes and metrics (name -> value).
 *
 * Common failures: MQ_EINVAL for a NULL required argument, a bad options struct, a run id the log
 * does not hold (the message names it); MQ_EIO when there is no log yet (except for
 * mq_runs_list_json) or it cannot be opened or read: locked past the 10 s busy timeout, corrupt,
 * not a database, or written by a newer monoquant (the message names the file).
 * The JSON functions follow the buffer convention of mq_model_metadata_json; another process may
 * add runs between a sizing call and the real one, so call again while MQ_EBUFFER says the
 * buffer is short.
 * ================================================================================================ */

#define MQ_RUNLOG_OPTIONS_VERSION 1

/* Which run log to use and how a reproduction is recorded. Fill it with mq_runlog_options_init.
 * Every function below also takes NULL for the defaults. The strings are read during the call. */
typedef struct mq_runlog_options {
    uint32_t size;           /* sizeof(mq_runlog_options), set by _init; checked by every call */
    uint32_t version;        /* MQ_RUNLOG_OPTIONS_VERSION, set by _init; checked by every call */
    const char* path;        /* NULL: the default log above, found from the environment as it is
                                at the time of the call; else the log file */
    const char* entry_point; /* NULL ("c"), or the name a binding records reproductions under */
    int32_t no_log;          /* non-zero: mq_run_reproduce does not record the reproduction as a
                                new run (MONOQUANT_LOG=0 has the same effect) */
} mq_runlog_options;

/* Fills *opts with the defaults (the default log, entry point "c", reproductions recorded) and
 * sets size and version. MQ_EINVAL if opts is NULL. */
MQ_API int mq_runlog_options_init(mq_runlog_options* opts);

/* The runs, oldest first, as a JSON list of runs. filters_json is NULL or a JSON object of
 * key -> value strings that every listed run matches, on the flattened keys of `monoquant runs
 * list --filter` (id, entry_point, host, input, input_xxh3, input_sha256, output, output_xxh3,
 * output_sha256, versions.*,
 * options.*, recipe.*, results.*, metrics.*; numbers as they print, e.g. {"options.bits": "4"}).
 * A log that does not exist yet lists as [] and is not created. MQ_EINVAL for filters that are
 * not such an object. */
MQ_API int mq_runs_list_json(const mq_runlog_options* log, const char* filters_json, char* buf,
                             size_t cap, size_t* len);

/* One run (id >= 1) as a JSON object. */
MQ_API int mq_run_show_json(const mq_runlog_options* log, int64_t id, char* buf, size_t cap,
                            size_t* len);

/* The side-by-side comparison of n_ids runs (1 .. 1024), in the order given, as JSON:
 * {"ids": [...], "settings", "results", "layers" (SQNR in dB and kernel per tensor), "metrics":
 * lists of {"key", "values" (one string per run, "" where a run has none), "differs"}, "pareto":
 * one bool per run, true when no other run is at most as big and at least as good (overall
 * SQNR) with one of the two strictly better}. MQ_EINVAL for NULL ids, n_ids 0 or too large. */
MQ_API int mq_runs_compare_json(const mq_runlog_options* log, const int64_t* ids, size_t n_ids,
                                char* buf, size_t cap, size_t* len);

/* Runs run `id` again from its stored settings, through the pipeline of mq_quantize_file: the
 * input's digest (and the calibration file's) is checked against the record first, then the
 * stored options and resolved recipe are quantized into `output` (NULL: a temporary file,
 * removed before the call returns), and the output's digest is compared with the recorded one
 * (the XXH3-128, or the sha256 of a run recorded before the log's schema 2).
 * progress/user as for mq_quantize_file. *result (may be NULL) receives a report handle (read it
 * with mq_report_json, free it with mq_report_free), NULL on failure:
 * {"run_id", "identical" (bool), "output_digest", "recorded_digest" (each "xxh3 <hex>" or
 * "sha256 <hex>", the digest compared), "output" (kept file, or
 * absent), "differences" (what differs when not identical: monoquant version, resolved config
 * per tensor, tensors quantized, SQNR), "new_run_id" (the reproduction's run, 0 when not
 * recorded), "log_warning", "report" (the quantization report)}.
 * A reproduction that is not identical still returns MQ_OK. Fails with MQ_EIO when the input or
 * calibration file cannot be read or has changed since the run (nothing runs; the message gives
 * both hashes), MQ_EUNSUPPORTED for a run without an input file (an in-memory quantization or a
 * search trial), MQ_EFORMAT for stored settings this library cannot read (a newer monoquant's),
 * and otherwise as mq_quantize_file. */
MQ_API int mq_run_reproduce(const mq_runlog_options* log, int64_t id, const char* output,
                            mq_progress_fn progress, void* user, mq_report** result);

/* Attaches (or replaces) the user metric `name` = value to run `id` (an accuracy measured
 * afterwards). MQ_EINVAL for a NULL or empty name or an unknown run; MQ_ENONFINITE for a NaN or
 * infinite value. */
MQ_API int mq_run_log_metric(const mq_runlog_options* log, int64_t id, const char* name,
                             double value);

/* Adds the sha256 of run `id`'s input, output and calibration files to its record (runs record
 * files by their XXH3-128; the sha256 is computed on request, as `monoquant runs show ID
 * --sha256`): each file is read once and checked against the recorded XXH3 in the same read; a
 * digest already recorded is kept. Read the result with mq_run_show_json. MQ_EINVAL for an
 * unknown run; MQ_EIO when a file has changed since the run or is gone (the message names it;
 * nothing is stored) or the log cannot be written. */
MQ_API int mq_run_add_sha256(const mq_runlog_options* log, int64_t id);

/* Adds component = version ("torch", "2.5.1") to the versions every run recorded by this process
 * stores from now on: a binding names its host, which the library cannot know. An empty version
 * removes the component; "monoquant" and "go" are the library's own and are refused
 * (MQ_EINVAL, as for a NULL or empty component). */
MQ_API int mq_runlog_set_version(const char* component, const char* version);

/* Records a told trial of the search s as a run (entry point "search"): its recipe as the
 * settings, its objectives as metrics and its bits per weight as a result, so `monoquant runs
 * compare` shows the trials side by side. *run_id (may be NULL) receives the run's id, 0 when
 * the log could not be written or MONOQUANT_LOG=0: recording never fails the call, the message
 * of a log that could not be written is then in mq_last_error. MQ_EINVAL for an unknown trial or
 * one not told yet. */
MQ_API int mq_search_record_run(mq_search* s, int64_t trial, const mq_runlog_options* log,
                                int64_t* run_id);
/* --------------------------------------------------------------------------------------------------
 * Sensitivity: how much each layer suffers when it alone is quantized to each of a list of
 * formats, ranked, and a mixed-precision recipe chosen from that table under a size budget
 * (docs/methods.md, "Sensitivity" and "recipe_for"). The caller runs its model: for every
 * candidate (layer, format) of mq_sensitivity_candidates_json it quantizes that layer alone
 * (mq_sensitivity_quantize), runs the model with it on the same inputs as the float model and
 * hands both outputs to mq_sensitivity_add_output, or its own metric to mq_sensitivity_set_metric.
 * The bookkeeping (SQNR sums, scores, ranking) and the knapsack are the engine's.
 *
 * Formats are JSON: a list of format names ("int8", "int4", "fp16", "bf16") or objects of recipe
 * rule options with an optional "name" ({"bits": 4, "group_size": 32, "method": "hqq"}, named
 * "int4-g32-hqq" when "name" is absent). NULL means ["int8", "int4"].
 *
 * The table (mq_sensitivity_table_json) is {"metric": "output_sqnr" | "weight_sqnr" | "user",
 * "baseline" (user metric of the float model), "formats": [{"name", "rule"}], "other_bytes" (the
 * tensors of no table layer), "layers": [{"name", "type", "params", "bytes", "tensors", "index"
 * (model order), "rank" (1: most sensitive), "sensitivity" (its score in its smallest format),
 * "results": [{"format", "bytes_after", "bits_per_weight", "weight_sqnr_db", "output_sqnr_db",
 * "metric", "score"}]}]}, most sensitive layer first. score is the damage, larger is worse:
 * 10^(-SQNR/10) for the SQNR metrics, baseline - metric for a user metric (higher is better).
 * Common failures: MQ_EHANDLE for a NULL, stale, freed or non-sensitivity handle; MQ_EINVAL for a
 * layer or format not in the table (the message lists them).
 * ------------------------------------------------------------------------------------------------ */

typedef struct mq_sensitivity mq_sensitivity;

/* Plans a table for the layers cfg quantizes in the float model m (from its tensor list and module
 * classes; no weight is read, m is not kept) and the formats of formats_json (NULL: the default).
 * Each candidate's recipe is cfg with one rule for the layer and a skip of everything else.
 * *out receives the handle (free it with mq_sensitivity_free), NULL on failure. MQ_EINVAL for a
 * NULL out, a bad config or formats (the message names the option, the format or the layer a
 * format does not fit), a quantized m or nothing to measure. */
MQ_API int mq_sensitivity_new(mq_sensitivity** out, mq_model* m, const mq_model_config* cfg,
                              const char* formats_json);

/* The table's layers, formats and candidates as JSON: {"layers": [...], "formats": [...],
 * "candidates": [{"layer", "format", "recipe" (usable as mq_model_config.recipe_json),
 * "bytes_after"}]}, in model order. Buffer convention as mq_model_metadata_json. */
MQ_API int mq_sensitivity_candidates_json(mq_sensitivity* s, char* buf, size_t cap, size_t* len);

/* Quantizes `layer` of m alone as `format` into a NEW quantized model in *out (NULL on failure):
 * the stored tensors of that layer only, with the config and report of mq_model_quantize, byte
 * for byte what quantizing the whole model with the candidate's recipe stores for it. Records
 * the layer's weight SQNR in the table. m is the model given to mq_sensitivity_new (or one with
 * the same tensors). Fails like mq_model_quantize, and with MQ_EINVAL for an unknown layer or
 * format. */
MQ_API int mq_sensitivity_quantize(mq_sensitivity* s, mq_model* m, const char* layer,
                                   const char* format, mq_model** out);

/* Adds one batch of outputs of the model with `layer` quantized as `format` (output) and of the
 * float model on the same input (reference): float tensors of the same shape, read during the
 * call only. Sums of reference^2 and (reference - output)^2 accumulate in double over every call,
 * so several outputs of one batch are added one by one. MQ_EINVAL for an unknown layer or format,
 * different shapes or non-float dtypes; MQ_ENONFINITE when either holds NaN or Inf. */
MQ_API int mq_sensitivity_add_output(mq_sensitivity* s, const char* layer, const char* format,
                                     const mq_tensor* reference, const mq_tensor* output);

/* Sets a metric of your own, higher is better: of the float model when layer and format are both
 * NULL (required before mq_sensitivity_table_json once any metric is set), else of the model with
 * `layer` quantized as `format`. The table then ranks by it. MQ_ENONFINITE for NaN or Inf. */
MQ_API int mq_sensitivity_set_metric(mq_sensitivity* s, const char* layer, const char* format,
                                     double value);

/* The table as JSON (see above): the user metric if any was set, else the output SQNR if any output
 * was added, else the weight SQNR. Candidates not measured have "score": null. Buffer convention
 * as mq_model_metadata_json. MQ_EINVAL for a user metric without the float model's value. */
MQ_API int mq_sensitivity_table_json(mq_sensitivity* s, char* buf, size_t cap, size_t* len);

/* Frees the handle. Accepts NULL (MQ_OK) and a stale or already-freed handle (MQ_EHANDLE). */
MQ_API int mq_sensitivity_free(mq_sensitivity* s);

/* Chooses a format per layer of a table (mq_sensitivity_table_json's, or `monoquant sensitivity
 * --json`'s) under a budget, {"max_bits_per_weight": 5} (over the table's layers, scales and zero
 * points counted) or {"max_size": bytes} (the whole checkpoint), by a greedy multiple-choice
 * knapsack: every layer starts in its smallest format, then the steps to bigger formats are taken
 * in order of score removed per byte added while they fit (docs/methods.md). Writes {"recipe":
 * {"rules": [one per layer, then {"match": "*", "skip": true}]}, "layers": [{"layer", "format",
 * "bytes_after", "score"}], "bytes", "layer_bytes", "bits_per_weight", "score", "budget"}; the
 * recipe is usable anywhere (mq_model_config.recipe_json, `monoquant quantize --recipe`). Buffer
 * convention as mq_model_metadata_json. MQ_EINVAL for NULL or malformed JSON, a layer without any
 * measured format, or a budget that even the smallest choice exceeds (the message says how small
 * it gets). */
MQ_API int mq_recipe_for_json(const char* table_json, const char* budget_json, char* buf,
                              size_t cap, size_t* len);

#ifdef __cplusplus
}
#endif

#endif /* MONOQUANT_H */
