"""derive.solve on the ICL model: grids, flags, poles, storage, CLI."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

import derive
from derive.cli import app
from derive.store import read_dataset, write_dataset
from numerics.results import Status


def test_grid_dims_and_attrs():
    tau = np.linspace(0.1, 3, 7)
    ds = derive.solve("icl-linear-attention", tau=tau, alpha=[1.0, 10.0], kappa=0.5, rho=0.01,
                      lam=0.0)
    assert ds.e_icl.dims == ("tau", "alpha")
    assert ds.e_icl.shape == (7, 2)
    assert ds.attrs["kappa"] == 0.5 and ds.attrs["model"] == "icl-linear-attention"
    assert len(ds.attrs["equations_sha256"]) == 64
    for v in ("converged", "residual", "iterations", "status", "e_train"):
        assert v in ds


def test_pole_is_flagged_not_returned_as_inf():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = derive.solve("icl-linear-attention", tau=[0.5, 1.0, 2.0], alpha=10.0, kappa=0.5,
                          rho=0.01, lam=0.0)
    assert ds.converged.values.tolist() == [True, False, True]
    assert int(ds.status[1]) == Status.POLE
    assert math.isnan(float(ds.e_icl[1]))
    # with a ridge the peak is finite and solved
    ds = derive.solve("icl-linear-attention", tau=1.0, alpha=10.0, kappa=0.5, rho=0.01, lam=1e-3)
    assert bool(ds.converged) and np.isfinite(float(ds.e_icl))


def test_double_descent_residue():
    """Spec §2.5: at alpha=10, kappa=0.5, rho=0.01, e_ICL(0.999) = 332.39, e_ICL(1.001) = 332.96."""
    ds = derive.solve("icl-linear-attention", tau=[0.999, 1.001], alpha=10.0, kappa=0.5,
                      rho=0.01, lam=0.0)
    assert float(ds.e_icl[0]) == pytest.approx(332.39, abs=0.006)
    assert float(ds.e_icl[1]) == pytest.approx(332.96, abs=0.006)


def test_task_generalisation_gap_limits():
    """Spec §2.5: at alpha = tau = 1e8, rho = 0.01: g_task(0.5) = 0.50495, g(1) = 5e-5, g(2) = 1e-10."""
    ds = derive.solve("icl-linear-attention", tau=1e8, alpha=1e8, kappa=[0.5, 1.0, 2.0], rho=0.01,
                      lam=0.0)
    g = (ds.e_icl - ds.e_idg).values
    # the spec prints 5 significant digits, then one: compare to what is printed
    assert g[0] == pytest.approx(0.50495, rel=2e-5)
    assert g[1] == pytest.approx(5e-5, abs=0.5e-5)
    assert g[2] == pytest.approx(1e-10, abs=0.05e-10)
    # g is a difference of two O(rho) numbers: float64 keeps ~16 - log10(rho/g) digits
    m = derive.models.get("icl-linear-attention")
    for i, k in enumerate((0.5, 1.0, 2.0)):
        mp_out = m.evaluate_mp(dict(tau=1e8, alpha=1e8, kappa=k, rho=0.01, lam=0.0))
        g_mp = float(mp_out["e_icl"] - mp_out["e_idg"])
        assert g[i] == pytest.approx(g_mp, rel=1e-15 * 0.01 / g_mp * 100)


@pytest.mark.parametrize("bad,msg", [
    (dict(alpha=-1.0), "'alpha'"), (dict(tau=0.0), "'tau'"), (dict(kappa=float("nan")), "NaN"),
    (dict(rho=-0.1), "'rho'"), (dict(lam=[0.1, -1.0]), "'lam'"), (dict(kappa=-math.inf), "'kappa'"),
])
def test_bad_parameters_rejected_by_name(bad, msg):
    p = dict(tau=0.5, alpha=10.0, kappa=0.5, rho=0.01, lam=0.0)
    p.update(bad)
    with pytest.raises(ValueError, match=msg) as exc:
        derive.solve("icl-linear-attention", **p)
    assert "valid range" in str(exc.value)


def test_missing_and_unknown_parameters():
    with pytest.raises(ValueError, match="needs values"):
        derive.solve("icl-linear-attention", tau=0.5)
    with pytest.raises(ValueError, match="no parameter"):
        derive.solve("icl-linear-attention", tau=0.5, alpha=1, kappa=1, rho=0, lam=0, beta=2)
    with pytest.raises(KeyError, match="unknown model"):
        derive.models.get("no-such-model")


def test_netcdf_roundtrip(tmp_path):
    ds = derive.solve("icl-linear-attention", tau=[0.5, 1.0, 2.0], alpha=10.0,
                      kappa=[0.5, math.inf], rho=0.01, lam=0.0)
    back = read_dataset(write_dataset(ds, tmp_path / "x.nc"))
    assert back.converged.dtype == bool
    np.testing.assert_array_equal(back.converged.values, ds.converged.values)
    np.testing.assert_array_equal(back.kappa.values, [0.5, math.inf])
    np.testing.assert_allclose(back.e_icl.values, ds.e_icl.values, rtol=0, equal_nan=True)


def test_cli_end_to_end(tmp_path):
    r = CliRunner()
    out = r.invoke(app, ["models"])
    assert out.exit_code == 0 and "icl-linear-attention" in out.output
    out = r.invoke(app, ["show", "icl-linear-attention", "--latex"])
    assert out.exit_code == 0 and r"\varepsilon" in out.output
    f = tmp_path / "s.nc"
    out = r.invoke(app, ["solve", "icl-linear-attention", "--tau", "0.5:2:4", "--alpha", "10",
                         "--kappa", "0.5,inf", "--rho", "0.01", "--lam", "0", "-o", str(f)])
    assert out.exit_code == 0, out.output
    assert "6/8 points converged, 2 not converged (pole 2)" in out.output  # tau = 1 is the pole
    assert read_dataset(f).e_icl.shape == (4, 2)
    out = r.invoke(app, ["solve", "icl-linear-attention", "--tau", "0.5", "--alpha", "-2",
                         "--kappa", "1", "--rho", "0", "--lam", "0"])
    assert out.exit_code == 2 and "'alpha'" in out.output
    out = r.invoke(app, ["solve", "icl-linear-attention", "--tau", "__import__('os')"])
    assert out.exit_code != 0
    g = tmp_path / "k.py"
    out = r.invoke(app, ["codegen", "icl-linear-attention", "-o", str(g)])
    assert out.exit_code == 0 and "def icl_observables(xp, special" in g.read_text()
    out = r.invoke(app, ["verify", "icl-linear-attention", "--points", "5"])
    assert out.exit_code == 0 and "min digits" in out.output
