"""Cross-check of lowrank's LoRA forward and backward against PyTorch + PEFT, on the same inputs.

    node bench/peft-compare.mjs --out DIR [--device cuda|cpu]   # lowrank: inputs and results
    python3 bench/peft_compare.py DIR [--reps N] [--builtin-reader]

For every shape in DIR/manifest.json, loads the inputs (x, W, A, B, dy) and lowrank's results
(y, dx, dA, dB) from DIR/<shape>.safetensors, builds a torch nn.Linear holding W, wraps it with
PEFT (LoraConfig + get_peft_model, lora_dropout = 0), sets A and B, runs forward and backward on
the same x and dy, and prints the max relative error max|lowrank - PEFT| / max|PEFT| of y, dx,
dA and dB. Tolerances: 1e-2 when x and W are bfloat16, 1e-4 for float32 (torch's TF32 matmuls
are switched off; lowrank's float32 products on the GPU are split-precision TF32, about float32).
Then times PEFT's eager forward, forward + backward, and the base nn.Linear alone (CUDA events
after warm-up, medians) beside lowrank's own times from the manifest. Writes DIR/peft.json;
exits 1 on a mismatch.

Without peft installed it says so and runs a plain-torch reference of the same math (PEFT's
LoRA forward: base product in the activations' dtype, adapter path in float32), labelled
"torch (no peft)". Reads safetensors with the `safetensors` package when present, else with the
small reader below (--builtin-reader forces it).
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

TOLERANCE = {'bfloat16': 1e-2, 'float16': 1e-2, 'float32': 1e-4}

# ---- safetensors -----------------------------------------------------------------------------

ST_DTYPES = {'F32': torch.float32, 'BF16': torch.bfloat16, 'F16': torch.float16, 'F64': torch.float64}
MAX_HEADER = 100_000_000


def read_safetensors_builtin(path):
    """The format: u64 little-endian header length N, N bytes of JSON, then the data buffer;
    each entry's data_offsets are relative to the buffer, end exclusive."""
    if sys.byteorder != 'little':
        raise RuntimeError('the built-in safetensors reader assumes a little-endian host')
    with open(path, 'rb') as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f'{path}: shorter than the 8-byte header length')
    n = int.from_bytes(blob[:8], 'little')
    if n > MAX_HEADER or 8 + n > len(blob):
        raise ValueError(f'{path}: header length {n} is beyond the file ({len(blob)} bytes) or above {MAX_HEADER}')
    header = json.loads(blob[8:8 + n].decode('utf-8'))
    data = memoryview(blob)[8 + n:]
    tensors = {}
    for name, entry in header.items():
        if name == '__metadata__':
            continue
        dtype = ST_DTYPES.get(entry['dtype'])
        if dtype is None:
            raise ValueError(f'{path}: tensor {name!r} has dtype {entry["dtype"]}, not one of {sorted(ST_DTYPES)}')
        shape = [int(d) for d in entry['shape']]
        begin, end = (int(v) for v in entry['data_offsets'])
        count = math.prod(shape)
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not 0 <= begin <= end <= len(data) or end - begin != count * itemsize:
            raise ValueError(f'{path}: tensor {name!r} has offsets [{begin}, {end}) that do not fit shape {shape} of {entry["dtype"]} in a {len(data)}-byte buffer')
        if count == 0:
            tensors[name] = torch.empty(shape, dtype=dtype)
        else:
            raw = torch.frombuffer(bytearray(data[begin:end]), dtype=torch.uint8)
            tensors[name] = raw.view(dtype).reshape(shape)
    return tensors


def read_safetensors(path, builtin):
    if not builtin:
        try:
            from safetensors.torch import load_file
        except ImportError:
            pass
        else:
            return load_file(path)
    return read_safetensors_builtin(path)


# ---- the references ------------------------------------------------------------------------


class One(torch.nn.Module):
    """A model with one linear layer named `proj`, PEFT's target."""

    def __init__(self, linear):
        super().__init__()
        self.proj = linear

    def forward(self, x):
        return self.proj(x)


def peft_version():
    try:
        import peft
    except ImportError:
        return None
    return peft.__version__


def build_peft(W, A, B, r, alpha):
    """nn.Linear(W) wrapped by PEFT with A and B set; returns (model, lora_A weight, lora_B weight, label)."""
    from peft import LoraConfig, get_peft_model

    out_features, in_features = W.shape
    base = torch.nn.Linear(in_features, out_features, bias=False, device=W.device, dtype=W.dtype)
    with torch.no_grad():
        base.weight.copy_(W)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=['proj'], lora_dropout=0.0, bias='none', init_lora_weights=True)
    model = get_peft_model(One(base), config)
    layer = next(m for m in model.modules() if hasattr(m, 'lora_A') and 'default' in getattr(m, 'lora_A', {}))
    lora_A, lora_B = layer.lora_A['default'].weight, layer.lora_B['default'].weight
    with torch.no_grad():
        lora_A.copy_(A.to(lora_A.dtype))
        lora_B.copy_(B.to(lora_B.dtype))
    scaling = layer.scaling['default']
    if not math.isclose(scaling, alpha / r, rel_tol=1e-12):
        raise RuntimeError(f'PEFT scaling {scaling} differs from lora_alpha / r = {alpha / r}')
    label = f'peft {peft_version()} (adapter {str(lora_A.dtype).replace("torch.", "")})'
    return model, lora_A, lora_B, label


def build_torch(W, A, B, r, alpha):
    """The same math as PEFT's LoRA Linear.forward, in plain torch: the base product in the
    activations' dtype, the adapter path in the adapter's float32, the sum cast back."""
    scale = alpha / r
    lora_A = A.float().clone().requires_grad_(True)
    lora_B = B.float().clone().requires_grad_(True)

    def model(x):
        result = F.linear(x, W)
        adapter = F.linear(F.linear(x.to(lora_A.dtype), lora_A), lora_B) * scale
        return (result + adapter).to(result.dtype)

    return model, lora_A, lora_B, 'torch (no peft)'


# ---- timing --------------------------------------------------------------------------------


def median_ms(fn, device, reps, warmup=5):
    """Median ms per call: CUDA events around each call after warm-up, or the wall clock on the CPU."""
    for _ in range(warmup):
        fn()
    if device.type == 'cuda':
        torch.cuda.synchronize()
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize()
        return statistics.median(start.elapsed_time(end) for start, end in events)
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


# ---- one shape -----------------------------------------------------------------------------


def rel_error(ours, ref):
    ours, ref = ours.float(), ref.float()
    if ours.shape != ref.shape:
        raise ValueError(f'shape {list(ours.shape)} differs from the reference {list(ref.shape)}')
    scale = ref.abs().max().item()
    diff = (ours - ref).abs().max().item()
    return diff / scale if scale > 0 else diff


def run_case(case, directory, device, reps, builtin, use_peft):
    t = read_safetensors(os.path.join(directory, case['file']), builtin)
    t = {k: v.to(device) for k, v in t.items()}
    x, W, A, B, dy = t['x'], t['W'], t['A'], t['B'], t['dy']
    r, alpha = case['r'], case['alpha']
    build = build_peft if use_peft else build_torch
    model, lora_A, lora_B, label = build(W, A, B, r, alpha)

    xg = x.clone().requires_grad_(True)
    y = model(xg)
    dy = dy.to(y.dtype)  # the same values unless lowrank's y had another dtype than the reference's
    y.backward(dy)
    ref = {'y': y.detach(), 'dx': xg.grad, 'dA': lora_A.grad, 'dB': lora_B.grad}
    errors = {k: rel_error(t[k], ref[k]) for k in ('y', 'dx', 'dA', 'dB')}
    activations = case['dtypes']['x'] if case['dtypes']['W'] == 'float32' else case['dtypes']['W']
    tolerance = TOLERANCE[activations]
    ok = all(e <= tolerance for e in errors.values())

    # Times: the reference's eager forward (no autograd graph) and forward + backward (grads of
    # x, A and B; W frozen), and the base nn.Linear alone, forward and forward + backward (dx).
    params = [lora_A, lora_B]
    xt = x.clone().requires_grad_(True)

    def forward():
        with torch.no_grad():
            model(x)

    def train():
        xt.grad = None
        for p in params:
            p.grad = None
        model(xt).backward(dy)

    def base_forward():
        with torch.no_grad():
            F.linear(x, W)

    def base_train():
        xt.grad = None
        F.linear(xt, W).backward(dy)

    timings = {
        'forwardMs': median_ms(forward, device, reps),
        'trainMs': median_ms(train, device, reps),
        'baseForwardMs': median_ms(base_forward, device, reps),
        'baseTrainMs': median_ms(base_train, device, reps),
    }
    return {
        'name': case['name'],
        'shape': {'t': case['t'], 'in': case['in'], 'out': case['out'], 'r': r},
        'activations': activations,
        'reference': label,
        'errors': errors,
        'tolerance': tolerance,
        'ok': ok,
        'reference_timings': timings,
        'lowrank_timings': case.get('timings', {}),
    }


def table(header, rows):
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = lambda cells: '| ' + ' | '.join(c.ljust(w) for c, w in zip(cells, widths)) + ' |'
    print(line(header))
    print('|' + '|'.join('-' * (w + 2) for w in widths) + '|')
    for row in rows:
        print(line(row))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('dir', help='the directory bench/peft-compare.mjs wrote')
    parser.add_argument('--reps', type=int, default=20, help='timed calls per measurement (default 20)')
    parser.add_argument('--device', help="torch device (default: the manifest's)")
    parser.add_argument('--builtin-reader', action='store_true', help='read safetensors without the safetensors package')
    args = parser.parse_args()

    with open(os.path.join(args.dir, 'manifest.json')) as f:
        manifest = json.load(f)
    if manifest.get('format') != 'lowrank-peft-compare':
        print(f'peft_compare: {args.dir}/manifest.json is not from bench/peft-compare.mjs', file=sys.stderr)
        return 2
    device = torch.device(args.device or manifest['device'])
    if device.type == 'cuda' and not torch.cuda.is_available():
        print(f'peft_compare: the manifest is for cuda but this torch ({torch.__version__}) sees no CUDA device', file=sys.stderr)
        return 2
    # float32 references in true float32 (torch's default on CUDA too; set so it cannot drift).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    version = peft_version()
    if version is None:
        print('peft is not installed: comparing with a plain-torch reference of the same math, labelled "torch (no peft)"')
    gpu = torch.cuda.get_device_name(device) if device.type == 'cuda' else None
    where = lambda name, model: f'{name} ({model})' if model else name
    print(f'torch {torch.__version__} on {where(device, gpu)}; lowrank ran on {where(manifest["device"], manifest.get("gpu"))}, '
          f'seed {manifest["seed"]}\n')

    results = [run_case(c, args.dir, device, args.reps, args.builtin_reader, version is not None) for c in manifest['cases']]

    e = lambda v: f'{v:.2e}'
    table(['shape', 'T × in → out, r', 'x, W', 'reference', 'y', 'dx', 'dA', 'dB', 'tolerance', 'ok'],
          [[res['name'], f'{res["shape"]["t"]} × {res["shape"]["in"]} → {res["shape"]["out"]}, {res["shape"]["r"]}',
            res['activations'], res['reference'], *(e(res['errors'][k]) for k in ('y', 'dx', 'dA', 'dB')),
            e(res['tolerance']), 'yes' if res['ok'] else 'NO'] for res in results])
    print('\nmax relative error = max|lowrank - reference| / max|reference|\n')

    ms = lambda v: '' if v is None else f'{v:.4f}'
    ratio = lambda a, b: '' if a is None or b is None else f'{a / b:.3f}'
    rows = []
    for res in results:
        ref, ours = res['reference_timings'], res['lowrank_timings']
        rows.append([res['name'], ms(ref['baseForwardMs']), ms(ref['forwardMs']), ms(ref['trainMs']), ms(ref['baseTrainMs']),
                     ms(ours.get('baseForwardMs')), ms(ours.get('forwardMs')), ms(ours.get('trainMs')),
                     ratio(ours.get('forwardMs'), ref['forwardMs']), ratio(ours.get('trainMs'), ref['trainMs'])])
    print(f'median ms ({"CUDA events" if device.type == "cuda" else "wall clock"}, {args.reps} calls after warm-up; lowrank\'s from its own run)')
    table(['shape', 'torch base fwd', 'ref fwd', 'ref fwd+bwd', 'torch base fwd+bwd (dx)', 'lowrank base fwd', 'lowrank fwd',
           'lowrank fwd+bwd', 'lowrank / ref fwd', 'lowrank / ref fwd+bwd'], rows)

    report = {
        'torch': torch.__version__,
        'peft': version,
        'device': str(device),
        'gpu': gpu,
        'tf32': False,
        'reps': args.reps,
        'manifest': manifest,
        'cases': results,
    }
    with open(os.path.join(args.dir, 'peft.json'), 'w') as f:
        json.dump(report, f, indent=2)
        f.write('\n')
    bad = [res['name'] for res in results if not res['ok']]
    print(f'\nwritten {os.path.join(args.dir, "peft.json")}; ' + (f'MISMATCH in {", ".join(bad)}' if bad else 'all within tolerance'))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
