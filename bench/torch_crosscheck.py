"""Compares lowrank's AdamW, LoRA forward/backward and InfoNCE (saved by bench/torch-crosscheck.mjs)
with torch.optim.AdamW, autograd, and sentence-transformers' MultipleNegativesRankingLoss /
MultipleNegativesSymmetricRankingLoss (their forward written out below: cos_sim through
F.normalize, times scale, cross-entropy against the diagonal; float64 autograd) on the CPU.
Exits 1 beyond 1e-6 relative (AdamW, LoRA) or 1e-5 (InfoNCE, whose logits are exponentiated)."""
import json, sys
import torch

d = json.load(open(sys.argv[1] if len(sys.argv) > 1 else 'lowrank-crosscheck.json'))
worst = 0.0
f = lambda v: torch.tensor(v, dtype=torch.float32)
p1 = torch.nn.Parameter(f(d['init']['p1'])); p2 = torch.nn.Parameter(f(d['init']['p2']))
opt = torch.optim.AdamW([{'params': [p1], 'lr': 1e-2, 'weight_decay': 0.1}, {'params': [p2], 'lr': 3e-3, 'weight_decay': 0.0, 'betas': (0.8, 0.99), 'eps': 1e-6}])
for a, b in d['grads']:
    p1.grad = f(a); p2.grad = f(b); opt.step()
for name, p in (('p1', p1), ('p2', p2)):
    ours = f(d['final'][name]); diff = (ours - p.detach()).abs().max().item(); scale = p.detach().abs().max().item()
    worst = max(worst, diff / scale)
    print(f'AdamW {name}: max |lowrank - torch| = {diff:.3e} (relative {diff/scale:.3e}); bit-identical elements {(ours == p.detach()).float().mean().item()*100:.1f} %')
L = d['lora']; T, I, O, R = 33, 45, 37, 8
x = f(L['x']).reshape(T, I).requires_grad_(); W = f(L['W']).reshape(O, I); A = f(L['A']).reshape(R, I).requires_grad_(); B = f(L['B']).reshape(O, R).requires_grad_()
y = x @ W.T + 1.5 * (x @ A.T) @ B.T
y.backward(f(L['dy']).reshape(T, O))
for name, ref in (('y', y.detach()), ('dx', x.grad), ('dA', A.grad), ('dB', B.grad)):
    ours = f(L[name]).reshape(ref.shape); diff = (ours - ref).abs().max().item()
    worst = max(worst, diff / ref.abs().max().item())
    print(f'LoRA {name}: max |lowrank - torch| / max|torch| = {diff / ref.abs().max().item():.3e}')


def mnrl(q, p, scale, symmetric):
    """sentence-transformers' MultipleNegativesRankingLoss (symmetric: ...SymmetricRankingLoss)."""
    F = torch.nn.functional
    scores = F.normalize(q, p=2, dim=1) @ F.normalize(p, p=2, dim=1).T * scale  # util.cos_sim(a, b) * scale
    labels = torch.arange(q.shape[0])
    forward = F.cross_entropy(scores, labels)
    if not symmetric:
        return forward
    backward = F.cross_entropy(scores[:, : q.shape[0]].T, labels)  # positives only, documents -> queries
    return (forward + backward) / 2


worst_nce = 0.0
C = d['infonce']; N, D = C['N'], C['D']
for c in C['cases']:
    q = torch.tensor(c['q'], dtype=torch.float64).reshape(N, D).requires_grad_()
    p = torch.tensor(c['p'], dtype=torch.float64).reshape(N + c['M'], D).requires_grad_()
    loss = mnrl(q, p, c['scale'], c['symmetric'])
    loss.backward()
    rels = []
    for name, ref in (('loss', loss.detach().reshape(1)), ('dq', q.grad), ('dp', p.grad)):
        ours = torch.tensor(c[name], dtype=torch.float64).reshape(ref.shape)
        rels.append((ours - ref).abs().max().item() / ref.abs().max().item())
    worst_nce = max(worst_nce, *rels)
    print(f"InfoNCE M={c['M']} scale={c['scale']} symmetric={c['symmetric']}: loss {c['loss'][0]:.6f} (torch {loss.item():.6f}); "
          f'relative differences loss {rels[0]:.3e}, dq {rels[1]:.3e}, dp {rels[2]:.3e}')
print(f'torch {torch.__version__}: worst relative difference {worst:.3e} (AdamW, LoRA), {worst_nce:.3e} (InfoNCE)')
sys.exit(0 if worst <= 1e-6 and worst_nce <= 1e-5 else 1)
