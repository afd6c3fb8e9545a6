"""Every symbolic derivation of theory/ agrees with the closed form the spec states."""

from __future__ import annotations

import pytest
import sympy as sp

from theory import asynchrony, hardware, momentum, staleness, yellowfin
from theory.symbols import mu_S

MODULES = (staleness, momentum, yellowfin, asynchrony, hardware)
ALL = [
    pytest.param(module, name, id=f"{module.__name__.split('.')[-1]}.{name}")
    for module in MODULES
    for name in module.DERIVATIONS
]

# What the issue asks to be derived, by module (a derivation may not silently go missing).
REQUIRED = {
    staleness: {
        "pmf",
        "mean",
        "variance",
        "tail",
        "general_update_identity",
        "momentum_form",
        "implicit_momentum",
        "effective_step",
        "lag_polynomial",
        "explicit_recursion",
        "estimated_total_momentum",
        "total_momentum",
    },
    momentum: {
        "determinant",
        "robust_lower_edge",
        "robust_upper_edge",
        "optimal_mu",
        "optimal_alpha",
        "optimal_rate",
    },
    yellowfin: {"stationarity", "cardano_root", "limit_C_to_0", "limit_D_to_0"},
    asynchrony: {"characteristic_polynomial", "reciprocal_root_form", "heavy_ball_limit"},
    hardware: {f"expected_max_{k}" for k in range(1, 7)} | {"expected_max_spacings"},
}


@pytest.mark.parametrize(("module", "name"), ALL)
def test_derived_equals_stated(module, name) -> None:
    derived, stated = module.DERIVATIONS[name]()
    assert sp.simplify(derived - stated) == 0


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_required_derivations_present(module) -> None:
    assert REQUIRED[module] <= set(module.DERIVATIONS)


@pytest.mark.parametrize("support", [0, 1, 3, 12])
def test_general_update_identity_any_support(support: int) -> None:
    derived, stated = staleness.general_update_identity(support)
    assert sp.expand(derived - stated) == 0


def test_derivations_are_not_vacuous() -> None:
    """The derived side is computed (a sum, integral, solve or limit), not the stated form itself."""
    mean = staleness.DERIVATIONS["mean"]().derived
    assert mean != staleness.MEAN  # an unsimplified sum
    assert sp.simplify(mean - (staleness.MEAN + 1)) != 0  # and a wrong closed form is caught


def test_geometric_pmf_at_m_workers_is_the_queueing_pmf() -> None:
    geometric = staleness.GEOMETRIC_PMF.subs(mu_S, staleness.IMPLICIT_MOMENTUM)
    assert sp.simplify(geometric - staleness.PMF) == 0
