"""Golden data for core/method's GPTQ: a reference GPTQ written in torch, after the paper's
code (Frantar et al. 2022, github.com/IST-DASLab/gptq, gptq.py fasterquant), run on one weight
matrix and one Hessian. Writes gptq_golden.safetensors (W, H, and per variant the reference's
dequantized weights) and prints the reference's output errors.

    .venv/bin/python core/method/testdata/gen_gptq_golden.py

The quantizer is torch's own: PerChannelMinMaxObserver qparams per row of each group (the
4-bit range as quant_min=-8/quant_max=7, or 0/15), fake_quantize_per_channel_affine for q.
"""
import os

import torch
from safetensors.torch import save_file
from torch.ao.quantization.observer import PerChannelMinMaxObserver

torch.manual_seed(14)
ROWS, K, N = 96, 256, 1024


def qparams(w, bits, sym):
    if sym:
        dt, (lo, hi) = torch.qint8, ((-8, 7) if bits == 4 else (-128, 127))
    else:
        dt, (lo, hi) = torch.quint8, ((0, 15) if bits == 4 else (0, 255))
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=dt, quant_min=lo, quant_max=hi,
                                   qscheme=torch.per_channel_symmetric if sym else torch.per_channel_affine)
    obs(w)
    s, z = obs.calculate_qparams()
    return s.float(), z.int(), lo, hi


def fq(w, s, z, lo, hi):
    return torch.fake_quantize_per_channel_affine(w.unsqueeze(1), s, z, 0, lo, hi).squeeze(1)


def gptq(W, H, bits, sym, group, actorder, blocksize=128, percdamp=0.01):
    W = W.clone().float()
    H = H.clone().float()
    cols = W.shape[1]
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    group = group or cols
    static = None
    if actorder:
        static = [qparams(W[:, i:i + group], bits, sym) for i in range(0, cols, group)]
        perm = torch.argsort(torch.diag(H), descending=True, stable=True)
        W = W[:, perm]
        H = H[perm][:, perm]
        invperm = torch.argsort(perm)
    else:
        perm = torch.arange(cols)
    Q = torch.zeros_like(W)
    damp = percdamp * torch.mean(torch.diag(H))
    H[range(cols), range(cols)] += damp
    H = torch.linalg.cholesky(H)
    H = torch.cholesky_inverse(H)
    H = torch.linalg.cholesky(H, upper=True)
    Hinv = H
    cur = None
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            col = int(perm[i1 + i])
            if actorder:
                cur = static[col // group]
            elif (i1 + i) % group == 0:
                cur = qparams(W[:, (i1 + i):(i1 + i + group)], bits, sym)
            q = fq(w, *cur)
            Q1[:, i] = q
            err1 = (w - q) / d
            W1[:, i:] -= err1.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err1
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    if actorder:
        Q = Q[:, invperm]
    return Q


def out_err(W, Q, H):
    D = (W - Q).double()
    return torch.einsum("ri,ij,rj->", D, H.double(), D).item()


def main():
    base = torch.randn(N, 1)
    X = torch.randn(N, K) + 0.5 * base
    X[:, ::17] *= 4
    H = (X.T @ X).float()
    chi = torch.distributions.Chi2(4.0).sample((ROWS, K))
    W = (0.02 * torch.randn(ROWS, K) / torch.sqrt(chi / 4)).float()
    out = {"W": W.contiguous(), "H": H.contiguous()}
    for name, bits, sym, group, act in [("int4_g64_sym", 4, True, 64, False),
                                         ("int4_g64_asym_actorder", 4, False, 64, True),
                                         ("int8_channel_sym", 8, True, 0, False)]:
        Q = gptq(W, H, bits, sym, group, act)
        out["Q_" + name] = Q.contiguous()
        print(f"{name}: reference GPTQ output error {out_err(W, Q, H):.6g}")
    save_file(out, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gptq_golden.safetensors"))


if __name__ == "__main__":
    main()
