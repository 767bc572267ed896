"""Golden outputs of torch.nn.functional.linear and conv2d for core/forward (the layer
forward the CLI uses to check a quantized layer's output).

    .venv/bin/python testdata/gen_forward_golden.py

Writes core/forward/testdata/golden.json: inputs, weights, biases, geometry and torch's
float32 outputs, every float32 written as its exact decimal value.
"""
import json
import os

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "core", "forward", "testdata", "golden.json")


def vals(t):
    return [float(v) for v in t.detach().to(torch.float32).reshape(-1).tolist()]


def main():
    g = torch.Generator().manual_seed(1234)
    cases = []
    for name, batch, n_in, n_out, bias in [("linear_3x7_to_5", 3, 7, 5, True), ("linear_1x16_to_3_nobias", 1, 16, 3, False),
                                           ("linear_8x64_to_32", 8, 64, 32, True)]:
        x = torch.randn(batch, n_in, generator=g)
        w = torch.randn(n_out, n_in, generator=g)
        b = torch.randn(n_out, generator=g) if bias else None
        y = F.linear(x, w, b)
        cases.append({"kind": "linear", "name": name, "x": vals(x), "x_shape": list(x.shape), "w": vals(w),
                      "w_shape": list(w.shape), "b": vals(b) if bias else None, "y": vals(y), "y_shape": list(y.shape)})
    for name, xs, ws, stride, padding, dilation, groups, bias in [
        ("conv_plain", (2, 3, 6, 7), (4, 3, 3, 2), (1, 1), (0, 0), (1, 1), 1, True),
        ("conv_stride_pad_dilation", (1, 2, 9, 8), (3, 2, 3, 3), (2, 1), (1, 2), (1, 2), 1, True),
        ("conv_depthwise", (1, 3, 5, 5), (6, 1, 3, 3), (1, 1), (1, 1), (1, 1), 3, False),
        ("conv_1x1", (2, 8, 4, 4), (5, 8, 1, 1), (1, 1), (0, 0), (1, 1), 1, True),
    ]:
        x = torch.randn(*xs, generator=g)
        w = torch.randn(*ws, generator=g)
        b = torch.randn(ws[0], generator=g) if bias else None
        y = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
        cases.append({"kind": "conv2d", "name": name, "x": vals(x), "x_shape": list(x.shape), "w": vals(w),
                      "w_shape": list(w.shape), "b": vals(b) if bias else None, "stride": list(stride),
                      "padding": list(padding), "dilation": list(dilation), "groups": groups,
                      "y": vals(y), "y_shape": list(y.shape)})
    with open(OUT, "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.relpath(OUT)}")


if __name__ == "__main__":
    main()
