"""Fast path, part 1: the Pyomo site block compiled once, replicated with scipy.

One site block of :mod:`optimizer.model` is compiled to matrices by Pyomo's
``LinearStandardFormCompiler`` (mixed form: rows keep their sense). Only the
virtual battery's efficiencies and the step length enter the matrix, so
sites that share them share one compiled block. A group LP (a feeder, or the
whole fleet) is the block-diagonal of its sites' blocks plus coupling rows
(feeder limits, fleet export commitment) and their slack columns. Bounds,
costs and right-hand sides are filled from :class:`~optimizer.sitedata.SiteData`
arrays through the compiled column and row maps, vectorized.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pyomo.environ as pyo
import scipy.sparse as sp
from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

from optimizer.model import site_block
from optimizer.sitedata import SCALAR_ROWS, SCALAR_VARS, STEP_ROWS, STEP_VARS, SiteData

log = logging.getLogger(__name__)

EQ, LE, GE = 0, 1, -1


@dataclass(frozen=True)
class SiteTemplate:
    """One site block as matrices: ``A`` (rows x cols) and where each name lives."""

    A: sp.csr_array
    col_index: dict[str, np.ndarray]  # name -> (n_steps,) or 0-d column indices
    row_index: dict[str, np.ndarray]
    row_sense: np.ndarray  # EQ, LE or GE per row
    compile_s: float

    @property
    def n_cols(self) -> int:
        return self.A.shape[1]

    @property
    def n_rows(self) -> int:
        return self.A.shape[0]


class TemplateCache:
    """Compiled site blocks by (n_steps, dt_h, eta_c, eta_d); owned by its caller."""

    def __init__(self) -> None:
        self._templates: dict[tuple, SiteTemplate] = {}

    def get(self, n_steps: int, dt_h: float, eta_c: float, eta_d: float) -> SiteTemplate:
        key = (n_steps, round(dt_h, 12), eta_c, eta_d)
        if key not in self._templates:
            self._templates[key] = compile_site(n_steps, dt_h, eta_c, eta_d)
        return self._templates[key]

    def __len__(self) -> int:
        return len(self._templates)


def compile_site(n_steps: int, dt_h: float, eta_c: float, eta_d: float) -> SiteTemplate:
    """Compile one site block with Pyomo's LinearStandardFormCompiler.

    Placeholder data fills bounds and right-hand sides (they do not enter the
    matrix; the fast path sets them from :class:`SiteData`).
    """
    t0 = time.perf_counter()
    zeros, ones = np.zeros(n_steps), np.ones(n_steps)
    lb = {name: zeros for name in STEP_VARS} | {name: 0.0 for name in SCALAR_VARS}
    ub = {name: ones for name in STEP_VARS} | {name: 1.0 for name in SCALAR_VARS}
    rhs = {name: zeros for name in STEP_ROWS} | {name: 0.0 for name in SCALAR_ROWS}
    m = pyo.ConcreteModel()
    m.b = pyo.Block(concrete=True)
    site_block(m.b, n_steps, dt_h, eta_c, eta_d, lb, ub, rhs)
    order = [v for name in STEP_VARS for v in getattr(m.b, name).values()]
    order += [getattr(m.b, name) for name in SCALAR_VARS]
    rows = [c for name in STEP_ROWS for c in getattr(m.b, name).values()]
    rows += [getattr(m.b, name) for name in SCALAR_ROWS]
    m.obj = pyo.Objective(expr=sum(order))  # every column appears (placeholder costs)
    info = LinearStandardFormCompiler().write(m, mixed_form=True, column_order=order,
                                              row_order=rows)
    col_pos = {id(v): j for j, v in enumerate(info.columns)}
    if len(col_pos) != len(order):
        raise RuntimeError("compiled site block lost columns")
    col_index = {name: np.array([col_pos[id(v)] for v in getattr(m.b, name).values()])
                 for name in STEP_VARS}
    col_index |= {name: np.array(col_pos[id(getattr(m.b, name))]) for name in SCALAR_VARS}
    row_pos: dict[int, int] = {}
    sense = np.empty(len(info.rows), dtype=np.int8)
    for i, entry in enumerate(info.rows):
        con, mult = entry
        if id(con) in row_pos:
            raise RuntimeError(f"site constraint {con.name} compiled to a ranged row pair")
        row_pos[id(con)] = i
        sense[i] = mult
    row_index = {name: np.array([row_pos[id(c)] for c in getattr(m.b, name).values()])
                 for name in STEP_ROWS}
    row_index |= {name: np.array(row_pos[id(getattr(m.b, name))]) for name in SCALAR_ROWS}
    A = sp.csr_array(info.A)
    A.sort_indices()
    elapsed = time.perf_counter() - t0
    log.debug("compiled site block: %d rows x %d cols in %.3f s", A.shape[0], A.shape[1],
              elapsed)
    return SiteTemplate(A, col_index, row_index, sense, elapsed)


@dataclass
class GroupLP:
    """One independent LP: some sites' blocks plus their coupling rows.

    Columns: ``len(sites)`` site blocks of ``n_site_cols`` each, then two slack
    columns per coupled feeder and step (import, export), then one VPP
    shortfall column per step when the fleet commitment applies. Rows: the
    site blocks, then the coupling rows (``coupling_rows`` of them).
    """

    sites: np.ndarray
    feeders: np.ndarray  # indices into SiteData.feeder_sites
    has_vpp: bool
    n_site_cols: int
    n_site_rows: int
    A: sp.csc_array
    cost: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    template: SiteTemplate  # layout shared by every site block (maps only)

    @property
    def n_cols(self) -> int:
        return self.A.shape[1]

    @property
    def n_rows(self) -> int:
        return self.A.shape[0]

    def site_values(self, x: np.ndarray, name: str) -> np.ndarray:
        """A site variable's values from the LP solution, ``(len(sites), n_steps)``."""
        k = len(self.sites)
        blocks = x[:k * self.n_site_cols].reshape(k, self.n_site_cols)
        return blocks[:, self.template.col_index[name]]


def assemble_group(sd: SiteData, sites: np.ndarray, cache: TemplateCache) -> GroupLP:
    """Matrices and vectors of the LP of ``sites`` (with the coupling rows among them)."""
    sites = np.asarray(sites, dtype=np.int64)
    templates = [cache.get(sd.n_steps, sd.dt_h, *sd.signatures[g])
                 for g in range(len(sd.signatures))]
    base = templates[0]
    for tpl in templates[1:]:
        if tpl.A.shape != base.A.shape or tpl.col_index["e"].tolist() != \
                base.col_index["e"].tolist():
            raise RuntimeError("compiled site blocks differ in layout")
    sigs = sd.site_sig[sites]
    if len(templates) == 1:
        blocks = sp.kron(sp.eye_array(len(sites), format="csr"), base.A, format="csr")
    else:
        blocks = sp.block_diag([templates[g].A for g in sigs], format="csr")
    in_group = np.zeros(sd.n_sites, dtype=bool)
    in_group[sites] = True
    feeders = np.array([f for f, members in enumerate(sd.feeder_sites)
                        if in_group[members].all()], dtype=np.int64)
    has_vpp = sd.vpp_export_kw is not None and len(sites) == sd.n_sites
    coupling, n_extra = _coupling_rows(sd, sites, feeders, has_vpp, base)
    n_block_cols = blocks.shape[1]
    if coupling is not None:
        top = sp.hstack([blocks, sp.csr_array((blocks.shape[0], n_extra))], format="csr")
        A = sp.vstack([top, coupling], format="csc")
    else:
        A = sp.csc_array(blocks)
    lp = GroupLP(sites=sites, feeders=feeders, has_vpp=has_vpp, n_site_cols=base.n_cols,
                 n_site_rows=base.n_rows, A=A, cost=np.zeros(A.shape[1]),
                 col_lower=np.zeros(A.shape[1]), col_upper=np.zeros(A.shape[1]),
                 row_lower=np.zeros(A.shape[0]), row_upper=np.zeros(A.shape[0]),
                 template=base)
    assert n_block_cols == len(sites) * base.n_cols
    fill_vectors(lp, sd)
    return lp


def site_vectors(sd: SiteData, tpl: SiteTemplate,
                 sites: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Costs, column bounds and row bounds of site blocks in the template's layout.

    Returns ``(cost, col_lower, col_upper)`` of shape ``(k, n_site_cols)`` and
    ``(row_lower, row_upper)`` of shape ``(k, n_site_rows)`` for ``sites``
    (default: every site), ready to be laid side by side.
    """
    sites = np.arange(sd.n_sites) if sites is None else sites
    k = len(sites)
    cost, lo, hi = (np.empty((k, tpl.n_cols)) for _ in range(3))
    for name in STEP_VARS + SCALAR_VARS:
        idx = tpl.col_index[name]
        cost[:, idx] = np.asarray(sd.cost[name])[sites]
        lo[:, idx] = np.asarray(sd.lb[name])[sites]
        hi[:, idx] = np.asarray(sd.ub[name])[sites]
    rhs = np.empty((k, tpl.n_rows))
    for name in STEP_ROWS + SCALAR_ROWS:
        rhs[:, tpl.row_index[name]] = np.asarray(sd.rhs[name])[sites]
    sense = tpl.row_sense[None, :]
    row_lo = np.where(sense == LE, -np.inf, rhs)
    row_hi = np.where(sense == GE, np.inf, rhs)
    return cost, lo, hi, row_lo, row_hi


def fill_vectors(lp: GroupLP, sd: SiteData,
                 vectors: tuple[np.ndarray, ...] | None = None) -> None:
    """Write bounds, costs and row bounds of ``lp`` from ``sd`` (in place).

    ``vectors`` may hold :func:`site_vectors` of the whole fleet, computed
    once for all groups.
    """
    k, n, m = len(lp.sites), lp.n_site_cols, lp.n_site_rows
    if vectors is None:
        cost, lo, hi, row_lo, row_hi = site_vectors(sd, lp.template, lp.sites)
    else:
        cost, lo, hi, row_lo, row_hi = (v[lp.sites] for v in vectors)
    lp.cost[:k * n] = cost.ravel()
    lp.col_lower[:k * n] = lo.ravel()
    lp.col_upper[:k * n] = hi.ravel()
    lp.row_lower[:k * m] = row_lo.ravel()
    lp.row_upper[:k * m] = row_hi.ravel()
    # Coupling: slack columns >= 0 at the penalty; rows bounded by the limits.
    j0, r0, t_n = k * n, k * m, sd.n_steps
    n_f = len(lp.feeders)
    slack = slice(j0, j0 + 2 * n_f * t_n)
    lp.col_lower[slack], lp.col_upper[slack] = 0.0, np.inf
    lp.cost[slack] = sd.dt_h * sd.limit_penalty
    lim = np.concatenate([np.repeat(sd.feeder_import_kw[lp.feeders], t_n),
                          np.repeat(sd.feeder_export_kw[lp.feeders], t_n)])
    lp.row_lower[r0:r0 + 2 * n_f * t_n] = -np.inf
    lp.row_upper[r0:r0 + 2 * n_f * t_n] = lim  # inf limit: a free row, kept for the layout
    if lp.has_vpp:
        v0, rv = j0 + 2 * n_f * t_n, r0 + 2 * n_f * t_n
        lp.col_lower[v0:v0 + t_n], lp.col_upper[v0:v0 + t_n] = 0.0, np.inf
        lp.cost[v0:v0 + t_n] = sd.dt_h * sd.vpp_penalty
        lp.row_lower[rv:rv + t_n] = sd.vpp_export_kw
        lp.row_upper[rv:rv + t_n] = np.inf


def _coupling_rows(sd: SiteData, sites: np.ndarray, feeders: np.ndarray, has_vpp: bool,
                   tpl: SiteTemplate) -> tuple[sp.csr_array | None, int]:
    """Feeder import/export rows (+ VPP rows) over the group's columns."""
    t_n, n = sd.n_steps, tpl.n_cols
    k = len(sites)
    local = np.full(sd.n_sites, -1, dtype=np.int64)
    local[sites] = np.arange(k)
    n_f = len(feeders)
    n_extra = 2 * n_f * t_n + (t_n if has_vpp else 0)
    n_rows = n_extra
    if n_rows == 0:
        return None, 0
    rows, cols, vals = [], [], []
    steps = np.arange(t_n)

    def net_import_terms(site_local: np.ndarray, row_of_step: np.ndarray, sign: float) -> None:
        for name, coef in (("imp", 1.0), ("impx", 1.0), ("exp", -1.0), ("expx", -1.0)):
            c = (site_local[:, None] * n + tpl.col_index[name][None, :])
            rows.append(np.broadcast_to(row_of_step[None, :], c.shape).ravel())
            cols.append(c.ravel())
            vals.append(np.full(c.size, sign * coef))

    j0 = k * n
    for q, f in enumerate(feeders):
        members = local[sd.feeder_sites[f]]
        imp_rows = q * t_n + steps
        exp_rows = (n_f + q) * t_n + steps
        net_import_terms(members, imp_rows, 1.0)
        net_import_terms(members, exp_rows, -1.0)
        for row_block, col_block in ((imp_rows, j0 + q * t_n), (exp_rows, j0 + (n_f + q) * t_n)):
            rows.append(row_block)
            cols.append(col_block + steps)
            vals.append(np.full(t_n, -1.0))
    if has_vpp:
        vrows = 2 * n_f * t_n + steps
        net_import_terms(np.arange(k), vrows, -1.0)
        rows.append(vrows)
        cols.append(j0 + 2 * n_f * t_n + steps)
        vals.append(np.ones(t_n))
    coupling = sp.coo_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_rows, j0 + n_extra)).tocsr()
    return coupling, n_extra
