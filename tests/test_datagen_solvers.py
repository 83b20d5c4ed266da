"""Solver engines: every engine agrees with a direct solve, honest residuals, recycling pays, the registry."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import nopx.datagen as dg
from nopx.datagen.gcrodr import GCRODR
from nopx.datagen.pardiso import pardiso_available
from nopx.datagen.solvers import (DirectSolver, SolveStats, available_solvers, build_solver, relative_residual,
                                  solver_takes_rtol)


def _systems(family="darcy", count=4, n=12, **config):
    cls = dg.family_class(family)
    instance = cls(cls.config_type(**config), grid=dg.CellGrid(n=n, ndim=cls.ndim), seed=0)
    return [(p.matrix, p.rhs) for p in map(instance.problem, range(count))]


SPD = {"family": "darcy", "modes": 8}
INDEFINITE = {"family": "helmholtz"}
NONSYMMETRIC = {"family": "advection_diffusion", "modes": 4}
ENGINES = [  # (method, options, which systems it is for)
    ("direct", {}, [SPD, INDEFINITE, NONSYMMETRIC]),
    ("cg", {"preconditioner": "amg"}, [SPD]),
    ("cg", {"preconditioner": "jacobi"}, [SPD]),
    ("gmres", {"preconditioner": "ilu"}, [SPD, INDEFINITE, NONSYMMETRIC]),
    ("gcrodr", {"m": 30, "k": 10, "preconditioner": "jacobi"}, [SPD, NONSYMMETRIC]),
    ("gcrodr", {"m": 30, "k": 10, "preconditioner": "ilu"}, [INDEFINITE]),
    ("amg", {}, [SPD]),
    ("gmg", {}, [SPD, INDEFINITE]),
    ("sor", {"max_sweeps": 20000}, [SPD]),
    ("auto", {"candidates": ("amg", "direct"), "probe": 1}, [SPD]),
    ("pardiso", {}, [SPD, INDEFINITE, NONSYMMETRIC]),
]


@pytest.mark.parametrize("method, options, kinds", ENGINES, ids=[f"{m}-{o.get('preconditioner', '')}"
                                                                 for m, o, _ in ENGINES])
def test_every_engine_agrees_with_a_direct_solve(method, options, kinds):
    if method == "pardiso" and not pardiso_available():
        pytest.skip("pypardiso is not installed")
    for kind in kinds:
        systems = _systems(**kind)
        tolerance = {"rtol": 1e-10} if solver_takes_rtol(method) else {}
        results = list(build_solver(method, **tolerance, **options).solve(iter(systems)))
        assert len(results) == len(systems)
        for (matrix, rhs), (x, stats) in zip(systems, results, strict=True):
            expected = np.linalg.solve(matrix.toarray(), rhs)
            np.testing.assert_allclose(x, expected, rtol=0, atol=1e-8 * np.abs(expected).max(), err_msg=kind)
            assert isinstance(stats, SolveStats) and stats.seconds > 0
            assert stats.residual == pytest.approx(relative_residual(matrix, x, rhs), rel=1e-6, abs=1e-15)
            assert stats.residual <= 1e-10


def test_direct_factors_once_per_distinct_matrix(monkeypatch):
    calls = []
    real = spla.splu
    monkeypatch.setattr(spla, "splu", lambda *a, **k: calls.append(1) or real(*a, **k))
    matrix = _systems(count=1)[0][0]
    rhs = np.random.default_rng(0).standard_normal((5, matrix.shape[0]))
    results = list(DirectSolver().solve([(matrix, b) for b in rhs] + [(matrix.copy(), rhs[0]), (2 * matrix, rhs[0])]))
    assert len(calls) == 2  # the copy is the same matrix; 2A is not
    assert all(stats.residual < 1e-12 for _, stats in results)


def test_direct_accepts_any_sparse_format_and_ordering():
    [(matrix, rhs)] = _systems(count=1)
    [(x_csr, _)] = DirectSolver(permc_spec="COLAMD").solve([(sp.csr_array(matrix), rhs)])
    [(x_csc, _)] = DirectSolver().solve([(matrix, rhs)])
    np.testing.assert_allclose(x_csr, x_csc, rtol=1e-12)


def test_engines_are_lazy_and_start_clean():
    """System t + 1 is pulled only after x_t is yielded (time steppers rely on it)."""
    systems = _systems(count=3)
    pulled = []

    def stream():
        for i, system in enumerate(systems):
            pulled.append(i)
            yield system

    engine = build_solver("gcrodr", m=20, k=5)
    for step, _ in enumerate(engine.solve(stream())):
        assert pulled == list(range(step + 1))
    again = list(engine.solve(systems[:1]))[0][1].matvecs
    assert again == list(engine.solve(systems[:1]))[0][1].matvecs  # no state leaks between calls


def _gmres_dr_cycle_residuals(A, b, m, k, cycles):
    """Residual norms at the end of each cycle of Morgan's GMRES-DR(m, k), a dense reference."""
    n = b.size
    x = np.zeros(n)
    r = b.copy()
    V = np.zeros((n, m + 1))
    H = np.zeros((m + 1, m))
    V[:, 0] = r / np.linalg.norm(r)
    start, c = 0, np.zeros(m + 1)
    c[0] = np.linalg.norm(r)
    norms = []
    for _ in range(cycles):
        for j in range(start, m):
            w = A @ V[:, j]
            for i in range(j + 1):
                H[i, j] = V[:, i] @ w
                w -= H[i, j] * V[:, i]
            H[j + 1, j] = np.linalg.norm(w)
            V[:, j + 1] = w / H[j + 1, j]
        y = np.linalg.lstsq(H, c, rcond=None)[0]
        x += V[:, :m] @ y
        r = b - A @ x
        norms.append(np.linalg.norm(r))
        Hm = H[:m, :m]
        e = np.zeros(m)
        e[-1] = 1
        f = np.linalg.solve(Hm.T, e)
        theta, G = np.linalg.eig(Hm + H[m, m - 1] ** 2 * np.outer(f, e))
        G = G[:, np.argsort(np.abs(theta))[:k]].real
        ls_residual = c - H @ y
        P = np.zeros((m + 1, k + 1))
        P[:m, :k] = G
        P[:, k] = ls_residual
        P, _ = np.linalg.qr(P)
        H = np.vstack([P.T @ H @ P[:m, :k], np.zeros((m - k, k))])
        H = np.hstack([H, np.zeros((m + 1, m - k))])
        V = np.hstack([V @ P, np.zeros((n, m - k))])
        c = np.zeros(m + 1)
        c[: k + 1] = P.T @ ls_residual
        start = k
    return norms


def test_gcrodr_on_one_system_matches_gmres_dr():
    """Mathematically equivalent on one system: the same residual at the end of every cycle."""
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((200, 200))
    A = sp.csr_matrix(np.diag(np.linspace(0.01, 10, 200)) + 0.02 * (noise + noise.T))  # real harmonic Ritz values
    b = rng.standard_normal(200)
    reference = _gmres_dr_cycle_residuals(A, b, m=20, k=5, cycles=4)
    # A cycle costs 20 mat-vecs, then 15 (m - k) once 5 vectors are recycled, plus one for the true residual.
    ours = []
    for cap in (21, 21 + 16, 21 + 32, 21 + 48):
        [(x, _)] = GCRODR(m=20, k=5, preconditioner="none", rtol=1e-14, max_matvecs=cap).solve([(A, b)])
        ours.append(np.linalg.norm(b - A @ x))
    np.testing.assert_allclose(ours, reference, rtol=1e-6)
    assert ours[-1] < 0.1 * ours[0]


def test_recycling_needs_fewer_matvecs_than_gmres_on_a_sequence():
    systems = _systems(family="darcy", count=6, n=24, coefficient="lognormal")
    plain = [s.matvecs for _, s in GCRODR(m=30, k=0, preconditioner="jacobi").solve(systems)]
    recycled = [s.matvecs for _, s in GCRODR(m=30, k=10, preconditioner="jacobi").solve(systems)]
    assert sum(recycled[1:]) < 0.6 * sum(plain[1:]), (plain, recycled)


def test_auto_skips_a_candidate_that_refuses_the_matrix():
    """gmg refuses a non-symmetric matrix by name; auto goes on with the next candidate, in order."""
    systems = _systems(**NONSYMMETRIC)
    results = list(build_solver("auto", candidates=("gmg", "direct"), rtol=1e-10).solve(iter(systems)))
    assert [stats.engine for _, stats in results] == ["direct"] * len(systems)
    for (matrix, rhs), (x, _) in zip(systems, results, strict=True):
        assert relative_residual(matrix, x, rhs) <= 1e-10
    with pytest.raises(ValueError, match="no candidate applies"):
        list(build_solver("auto", candidates=("gmg",)).solve(iter(systems)))


def test_registry_and_recipe_tolerance():
    assert {"direct", "cg", "gmres", "gcrodr", "amg", "gmg", "sor", "auto"} <= set(available_solvers())
    with pytest.raises(ValueError, match="^method: unknown solver 'drect'; did you mean 'direct'"):
        build_solver("drect")
    with pytest.raises(TypeError):
        build_solver("direct", no_such_option=1)
    recipe = dg.recipe_from_mapping({"pde": "darcy", "samples": 2, "out": "x.h5",
                                     "solver": {"method": "gcrodr", "rtol": 1e-9}}, where="r")
    assert recipe.solver.build().rtol == 1e-9
    with pytest.raises(dg.recipe.UserError, match=r"solver\.options: k: need 0 <= k < m"):
        dg.recipe_from_mapping({"pde": "darcy", "samples": 2, "out": "x.h5",
                                "solver": {"method": "gcrodr", "options": {"k": 50}}}, where="r")


def test_residual_is_the_true_residual():
    matrix = sp.diags([2.0, 4.0]).tocsc()
    assert relative_residual(matrix, np.array([0.5, 0.0]), np.array([1.0, 1.0])) == pytest.approx(np.sqrt(0.5))
    assert relative_residual(matrix, np.zeros(2), np.zeros(2)) == 0.0
