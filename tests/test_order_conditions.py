"""Every tableau against the Runge-Kutta order conditions, written out from rooted trees.

Weights ``w`` over the stages give a solution of order p at ``t0 + theta h`` when, for every rooted tree
``tau`` with at most p nodes, ``sum_j w_j Phi_j(tau) = theta^|tau| / gamma(tau)`` (Butcher, Numerical
Methods for Ordinary Differential Equations, 2016, Sec. 31): ``Phi_j`` is the elementary weight of stage
j and ``gamma`` the tree's density. The trees and both functions come from this file, not from a
library, and are checked on their own (the number of trees of each order, the labelling identity).
Arithmetic is exact (``Fraction``); a condition counts as met within a relative 1e-12, since dopri8's
published coefficients meet theirs only to about 1e-16 and its computed midpoint weights to about 1e-14.
"""
from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import Sequence

import pytest

from nodecourse.solvers import ADAPTIVE_METHODS, TABLEAUX

Tree = tuple  # a rooted tree: the sorted tuple of the subtrees at its root; () is the single node
TOL = 1e-12
# The order of each method's embedded weights (dopri5's are Shampine's fourth-order ones; rkf45's are the
# fifth-order weights, estimating the error of its fourth-order solution).
EMBEDDED_ORDER = {"adaptive_heun": 1, "fehlberg2": 1, "bosh3": 2, "rkf45": 5, "dopri5": 4, "dopri8": 7}
# The order of the midpoint weights b_mid at theta = 1/2 (adaptive_heun's are an Euler half step; dopri8's:
# see its tableau).
MIDPOINT_ORDER = {"adaptive_heun": 1, "dopri5": 4, "dopri8": 5}


def _grow(tree: Tree) -> set[Tree]:
    """Every tree made from ``tree`` by attaching one new leaf to one of its nodes."""
    grown = {tuple(sorted(tree + ((),)))}
    for i, sub in enumerate(tree):
        grown |= {tuple(sorted(tree[:i] + (bigger,) + tree[i + 1:])) for bigger in _grow(sub)}
    return grown


@lru_cache(maxsize=None)
def trees_of_order(n: int) -> tuple[Tree, ...]:
    """All rooted trees with ``n`` nodes, each once (sorted subtrees make one form per tree)."""
    if n == 1:
        return ((),)
    return tuple(sorted(set().union(*(_grow(tree) for tree in trees_of_order(n - 1)))))


def nodes(tree: Tree) -> int:
    return 1 + sum(nodes(sub) for sub in tree)


def density(tree: Tree) -> int:
    """gamma(tau): the product over the nodes of the number of nodes in the subtree they root."""
    return nodes(tree) * math.prod(density(sub) for sub in tree)


def symmetry(tree: Tree) -> int:
    """sigma(tau): the number of automorphisms, from the repeated subtrees at each node."""
    return math.prod(math.factorial(tree.count(sub)) * symmetry(sub) ** tree.count(sub) for sub in set(tree))


@lru_cache(maxsize=None)
def stage_weights(name: str, tree: Tree) -> tuple[Fraction, ...]:
    """Phi_j(tau) for every stage j of the tableau ``name``: 1 for the single node, else the product over
    the root's subtrees u of sum_k a_jk Phi_k(u)."""
    tab = TABLEAUX[name]
    phi = [Fraction(1)] * tab.n_stages
    for sub in tree:
        inner = stage_weights(name, sub)
        phi = [p * sum((a * q for a, q in zip(row, inner)), Fraction(0)) for p, row in zip(phi, tab.a)]
    return tuple(phi)


def relative_residual(name: str, weights: Sequence[Fraction], tree: Tree, theta: Fraction = Fraction(1)) -> float:
    """``|sum_j w_j Phi_j(tau) / (theta^|tau| / gamma(tau)) - 1|``."""
    target = theta ** nodes(tree) / density(tree)
    return float(abs(sum(w * p for w, p in zip(weights, stage_weights(name, tree))) / target - 1))


def met(name: str, weights: Sequence[Fraction], n: int, theta: Fraction = Fraction(1)) -> list[bool]:
    """For each tree of order ``n``, whether its condition holds."""
    return [relative_residual(name, weights, tree, theta) <= TOL for tree in trees_of_order(n)]


def assert_order(name: str, weights: Sequence[Fraction], p: int, theta: Fraction = Fraction(1)) -> None:
    """The weights meet every condition up to order ``p``, and not all of those of order ``p + 1``."""
    for n in range(1, p + 1):
        assert all(met(name, weights, n, theta)), (name, n)
    assert not all(met(name, weights, p + 1, theta)), (name, p + 1)


# --- the trees themselves ---------------------------------------------------------------------------
def test_tree_counts_per_order():
    assert [len(trees_of_order(n)) for n in range(1, 10)] == [1, 1, 2, 4, 9, 20, 48, 115, 286]


@pytest.mark.parametrize("n", range(1, 10))
def test_density_and_symmetry_count_the_increasing_labellings(n):
    """n! / (sigma gamma) labellings of each tree have labels increasing away from the root, and there
    are (n - 1)! such labelled trees in all: this checks gamma and sigma on every tree."""
    assert sum(math.factorial(n) // (symmetry(t) * density(t)) for t in trees_of_order(n)) == math.factorial(n - 1)


def test_the_trees_of_order_four():
    leaf = ()
    assert set(trees_of_order(4)) == {(leaf, leaf, leaf), (leaf, (leaf,)), ((leaf, leaf),), (((leaf,),),)}
    assert sorted(density(t) for t in trees_of_order(4)) == [4, 8, 12, 24]


# --- the tableaux ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(TABLEAUX))
def test_stage_times_are_row_sums(name):
    tab = TABLEAUX[name]
    assert all(abs(sum(row, Fraction(0)) - c) <= TOL * max(c, 1) for row, c in zip(tab.a, tab.c)), name


@pytest.mark.parametrize("name", list(TABLEAUX))
def test_declared_order_is_exact(name):
    assert_order(name, TABLEAUX[name].b, TABLEAUX[name].order)


@pytest.mark.parametrize("name", ADAPTIVE_METHODS)
def test_embedded_weights_have_their_order(name):
    tab = TABLEAUX[name]
    assert_order(name, tab.b_embedded, EMBEDDED_ORDER[name])
    assert tab.error_order == min(tab.order, EMBEDDED_ORDER[name]) + 1


def test_every_adaptive_method_declares_its_embedded_order():
    assert set(EMBEDDED_ORDER) == set(ADAPTIVE_METHODS)


def test_dopri5_meets_the_fifth_order_conditions_exactly():
    b = TABLEAUX["dopri5"].b
    for tree in trees_of_order(5):
        assert sum(w * p for w, p in zip(b, stage_weights("dopri5", tree))) == Fraction(1, density(tree)), tree


@pytest.mark.parametrize("name", sorted(MIDPOINT_ORDER))
def test_midpoint_weights_give_the_midpoint(name):
    assert_order(name, TABLEAUX[name].b_mid, MIDPOINT_ORDER[name], theta=Fraction(1, 2))


def test_which_tableaux_have_midpoint_weights():
    assert {name for name, tab in TABLEAUX.items() if tab.b_mid is not None} == set(MIDPOINT_ORDER)
