#!/usr/bin/env python3
# State-only 8-bit PTQ of the float S4D-16h, per-head vs per-mode scale (NumPy; torch for erf).
# Checks whether a finer state grid rescues PTQ (results/README.md, QAT section).
# Usage:
#   cargo run --release -p experiments -- export --run results/float/smnist10k-s4d-16h \
#       --format safetensors --out /tmp/m16.safetensors
#   .venv-torch/bin/python scripts/state-ptq-granularity.py
import numpy as np, gzip, struct
from safetensors.numpy import load_file
from math import erf
t = load_file('/tmp/m16.safetensors')
dt = np.exp(t['s4d.log_dt'])[:,None]
A = -np.exp(t['s4d.log_A_real']) + 1j*t['s4d.A_imag']
B = t['s4d.B'][...,0] + 1j*t['s4d.B'][...,1]
C = t['s4d.C'][...,0] + 1j*t['s4d.C'][...,1]
D = t['s4d.D']
dA = np.exp(dt*A); dB = B*(dA-1)/A
def idx(p, lab=False):
    d=gzip.open(p+'.gz','rb').read()
    n=struct.unpack('>I',d[4:8])[0]
    return np.frombuffer(d[8:],dtype=np.uint8) if lab else np.frombuffer(d[16:],dtype=np.uint8).reshape(n,784)/255.0
N=400
X = idx('data/mnist10k/t10k-images-idx3-ubyte')[:N]; Y = idx('data/mnist10k/t10k-labels-idx1-ubyte', True)[:N]
Xc = idx('data/mnist10k/train-images-idx3-ubyte')[:200]
W = t['encoder.weight'][:,0]; b = t['encoder.bias']
import torch
def run(X, q=None, rec=False):
    u = X[:,:,None]*W[None,None,:] + b
    H,M = dA.shape; n=len(X)
    x = np.zeros((n,H,M),complex); ys=[]; mx=np.zeros((H,M))
    for s in range(784):
        x = dA[None]*x + dB[None]*u[:,s,:,None]
        if q is not None:
            lo,sc = q
            xr = np.clip(np.round(np.clip(x.real,-50,50)/sc - lo), -128,127)
            xi = np.clip(np.round(np.clip(x.imag,-50,50)/sc - lo), -128,127)
            x = (xr+lo)*sc + 1j*(xi+lo)*sc
        if rec: mx = np.maximum(mx, np.maximum(abs(x.real),abs(x.imag)).max(0))
        ys.append(2*(C[None]*x).real.sum(-1) + D*u[:,s,:])
    y = np.stack(ys,1)  # n,L,H
    if rec: return mx
    g = 0.5*y*(1+torch.erf(torch.from_numpy(y/np.sqrt(2))).numpy())
    z = g @ t['conv.weight'][:,:,0].T + t['conv.bias']
    Hh = z.shape[-1]//2
    o = z[...,:Hh]*(1/(1+np.exp(-z[...,Hh:])))
    logits = o.mean(1) @ t['decoder.weight'].T + t['decoder.bias']
    return (logits.argmax(-1)==Y).mean()*100
mx = run(Xc, rec=True)
print('float', run(X))
# symmetric per head: scale = max/127
sh = (mx.max(1,keepdims=True)/127)*np.ones_like(mx)
print('per-head 8b', run(X,(0,sh)))
sm = mx/127
print('per-mode 8b', run(X,(0,sm)))
