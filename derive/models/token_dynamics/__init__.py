r"""Tokens as interacting particles: self-attention dynamics on the sphere.

B. Geshkovski, C. Letrouit, Y. Polyanskiy, P. Rigollet, *A mathematical perspective on
Transformers* (arXiv:2312.10794) and *The emergence of clusters in self-attention dynamics*
(arXiv:2305.05465); P. Rigollet, *The mean-field dynamics of Transformers* (arXiv:2512.01868);
M. Burger, S. Kabri, Y. Korolev, T. Roith, L. Weigand (arXiv:2501.03096); Chen, Lin,
Polyanskiy, Rigollet (arXiv:2510.05554). Section numbers refer to the project spec
``shared/specs/token_dynamics.md``.

Stated here (definitions, spec §1.1):

* the SA velocity $\dot x_i=\mathbf P_{x_i}\sum_j\operatorname{softmax}_j(\beta\langle Qx_i,Kx_j\rangle)Vx_j$,
  the USA velocity with $\frac1n e^{\beta\langle Qx_i,Kx_j\rangle}$ instead of the softmax,
  the causal mask ($j\le i$), the Euclidean variant (no projection), as *tensor programs*
  (ordered SymPy assignments over indexed arrays, :class:`TensorProgram`);
* the interaction energy $E_\beta=\frac1{2\beta n^2}\sum_{ij}e^{\beta\langle x_i,Ax_j\rangle}$ (§1.4).

Derived here by SymPy (and tested):

* the equiangular reduction $\dot\rho$ (SA, USA) by substituting the equiangular Gram ansatz
  into the particle velocity (§2.1), for symbolic $n$ and explicitly for small $n$;
* its hitting times in closed form (exponential integral) by partial fractions and
  integration, proved by differentiation; the $\beta=0$ solution $\rho(t)$;
* the one-layer long-context Gram reduction and its critical limit $4\rho/(1+3\rho)$ (§2.5);
* the Kuramoto reduction in $d=2$ for general $V$ (Kuramoto–Sakaguchi plus a
  non-conformal term), and the first integral of the reversible case $V=\omega J$, $n=3$ (§2.4);
* the 4-particle energy and stationarity condition of Burger et al. (§2.7).

The batched velocity kernels are generated from the tensor programs (``programs.py``) by the
tensor stage of the code generator (:mod:`derive.codegen.tensor`): contractions become
``matmul``/``einsum`` (BLAS), the softmax is lowered to the max-shifted form computed in place,
and buffers of dead temporaries are reused. The same tensor program is *unrolled* at small sizes
into scalar SymPy expressions (softmax by its definition, no shift) and printed for mpmath: the
50-digit check of the kernel (``Model.verify_kernels``).

Package layout: ``programs.py`` (tensor programs), ``reduction.py`` (parameters, symbols, Gram
algebra), ``model.py`` (the model: derivations, scalar programs, pipeline).
"""
from __future__ import annotations

from ...codegen.tensor import Softmax, TensorProgram, generate_tensor, unroll, unrolled_program
from .model import MODEL, TokenDynamics
from .programs import DYNAMICS, energy_program, kuramoto_program, velocity_program
from .reduction import (BETA_P, N_P, RHO0_P, TARGET_P, GramVector, beta, gram_velocity, n, rho,
                        rho0, t, target)

__all__ = ["TokenDynamics", "MODEL", "TensorProgram", "Softmax", "generate_tensor", "unroll",
           "unrolled_program", "velocity_program", "energy_program", "kuramoto_program", "DYNAMICS",
           "GramVector", "gram_velocity", "BETA_P", "N_P", "RHO0_P", "TARGET_P", "beta", "n", "rho",
           "rho0", "t", "target"]
