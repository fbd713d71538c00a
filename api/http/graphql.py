"""A read-only GraphQL endpoint (strawberry) at ``/graphql`` over sites, devices, energy
aggregates, plans and alerts.

Same authentication as REST (``Authorization: Bearer <access token>``) and the
same role for reading (viewer or above); there are no mutations. One query
cannot take the service down: its depth is limited (``MAX_DEPTH``), its size
(``MAX_TOKENS``, ``MAX_ALIASES``) and its cost (``MAX_COST``): every list
field counts its ``limit`` argument (or its default) times the count of its
parent list, every other field counts 1 per parent item. Energy ranges are
limited as in REST.
"""

from __future__ import annotations

from typing import Any

import strawberry
from fastapi import HTTPException, WebSocketException, status
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)
from starlette.requests import HTTPConnection
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.fastapi import GraphQLRouter
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from adapters.registry import alerts as alert_repo
from adapters.registry import plans as plan_repo
from api.accounts import AuthError, Principal
from api.analytics import energy
from api.live.runtime import Runtime
from twin.fleet import DEVICE_TYPES

MAX_DEPTH = 6
MAX_TOKENS = 2000
MAX_ALIASES = 15
MAX_COST = 20000
MAX_LIMIT = 1000
# list fields and their default limit
LIST_DEFAULTS: dict[str, int] = {"sites": 100, "devices": 100, "energy": 1000, "plans": 50,
                                 "alerts": 200}


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


@strawberry.type(name="Device")
class DeviceNode:
    id: str
    site_id: str
    type: str
    online: bool
    stale: bool
    p_kw: float | None
    soc: float | None


def _device(rt: Runtime, row: int) -> DeviceNode:
    f = rt.fleet.fleet
    d = str(f.device_id[row])
    st = rt.telemetry.device_state(d) or {}
    vals: dict[str, float] = st.get("values", {})  # type: ignore[assignment]
    return DeviceNode(id=d, site_id=str(f.site_id[f.device_site[row]]),
                  type=DEVICE_TYPES[int(f.device_type[row])], online=st.get("online", False),
                  stale=st.get("stale", False), p_kw=vals.get("p_kw"), soc=vals.get("soc"))


@strawberry.type(name="Site")
class SiteNode:
    id: str
    name: str
    lat_deg: float
    lon_deg: float
    import_limit_kw: float
    export_limit_kw: float
    row: strawberry.Private[int]

    @strawberry.field(description="Devices of the site")
    def devices(self, info: Info, limit: int = 100) -> list[DeviceNode]:
        rt: Runtime = info.context["rt"]
        f = rt.fleet.fleet
        rows = range(int(f.site_start[self.row]), int(f.site_stop[self.row]))
        return [_device(rt, r) for r in list(rows)[:_limit(limit)]]


@strawberry.type
class EnergyRow:
    period: str
    site_id: str | None
    generation_kwh: float
    consumption_kwh: float
    import_kwh: float
    export_kwh: float
    self_consumption_kwh: float
    cost_eur: float
    revenue_eur: float
    co2_avoided_kg: float


@strawberry.type(name="Plan")
class PlanNode:
    id: str
    created_s: float
    status: str
    solver_status: str
    start_s: float
    step_s: float
    n_steps: int


@strawberry.type(name="Alert")
class AlertNode:
    id: int
    kind: str
    severity: str
    message: str
    site_id: str | None
    device_id: str | None
    first_seen_s: float
    last_seen_s: float
    cleared_s: float | None
    acked_by: str | None
    acked_s: float | None


@strawberry.type
class Query:
    @strawberry.field(description="Sites of the fleet")
    def sites(self, info: Info, limit: int = 100, offset: int = 0) -> list[SiteNode]:
        f = info.context["rt"].fleet.fleet
        rows = range(max(0, offset), min(f.n_sites, max(0, offset) + _limit(limit)))
        return [SiteNode(id=str(f.site_id[r]), name=str(f.site_name[r]), lat_deg=float(f.lat_deg[r]),
                     lon_deg=float(f.lon_deg[r]), import_limit_kw=float(f.import_limit_kw[r]),
                     export_limit_kw=float(f.export_limit_kw[r]), row=r) for r in rows]

    @strawberry.field(description="Devices, optionally of one site and type")
    def devices(self, info: Info, site_id: str | None = None, type: str | None = None,
                limit: int = 100) -> list[DeviceNode]:
        rt: Runtime = info.context["rt"]
        f = rt.fleet.fleet
        if site_id is not None and site_id not in f.site_row:
            raise ValueError(f"no site {site_id!r}")
        if type is not None and type not in DEVICE_TYPES:
            raise ValueError(f"type {type!r} is not one of {list(DEVICE_TYPES)}")
        out = []
        for r in range(f.n_devices):
            if site_id is not None and f.device_site[r] != f.site_row[site_id]:
                continue
            if type is not None and DEVICE_TYPES[int(f.device_type[r])] != type:
                continue
            out.append(_device(rt, r))
            if len(out) >= _limit(limit):
                break
        return out

    @strawberry.field(description="Energy aggregates from the telemetry history [kWh, EUR, kg]")
    def energy(self, info: Info, start_s: float, end_s: float, every: str = "day",
               site_id: str | None = None, per_site: bool = False, limit: int = 1000
               ) -> list[EnergyRow]:
        rt: Runtime = info.context["rt"]
        if not end_s > start_s or end_s - start_s > 400 * 86400:
            raise ValueError("the range must be positive and at most 400 days")
        df, _ = energy.energy_table(rt.history, rt.fleet.fleet, start_s, end_s,
                                    rt.market.tariff, now_s=rt.clock(), every=every,
                                    scope="site" if per_site else "fleet", site_id=site_id,
                                    raw_step_s=rt.settings.history_flush_s,
                                    raw_days=rt.settings.history_raw_days)
        return [EnergyRow(site_id=r.get("site_id"), **{k: v for k, v in r.items()
                                                       if k != "site_id"})  # type: ignore[arg-type]
                for r in energy.records(df)[:_limit(limit)]]

    @strawberry.field(description="Plans, newest first")
    def plans(self, info: Info, status: str | None = None, limit: int = 50) -> list[PlanNode]:
        recs = info.context["rt"].query(plan_repo.list_plans, status, _limit(limit))
        return [PlanNode(**{k: r[k] for k in ("id", "created_s", "status", "solver_status",
                                          "start_s", "step_s", "n_steps")}) for r in recs]

    @strawberry.field(description="Alerts with their life cycle, newest first")
    def alerts(self, info: Info, open_only: bool = False, kind: str | None = None,
               limit: int = 200) -> list[AlertNode]:
        recs = info.context["rt"].query(alert_repo.list_alert_states, open_only=open_only,
                                        kind=kind, limit=_limit(limit))
        keys = AlertNode.__annotations__.keys()
        return [AlertNode(**{k: r[k] for k in keys}) for r in recs]


def query_cost(selection: SelectionSetNode | None, fragments: dict[str, Any],
               multiplier: int = 1) -> int:
    """Cost of a selection set: each field costs ``multiplier``; a list field multiplies its
    children by its ``limit`` argument (a variable counts as ``MAX_LIMIT``)."""
    if selection is None:
        return 0
    total = 0
    for sel in selection.selections:
        if isinstance(sel, FieldNode):
            total += multiplier
            name = sel.name.value
            inner = multiplier
            if name in LIST_DEFAULTS:
                n = LIST_DEFAULTS[name]
                for arg in sel.arguments or ():
                    if arg.name.value == "limit":
                        n = int(arg.value.value) if isinstance(arg.value, IntValueNode) \
                            else MAX_LIMIT
                inner = multiplier * max(1, n)
            total += query_cost(sel.selection_set, fragments, inner)
        elif isinstance(sel, InlineFragmentNode):
            total += query_cost(sel.selection_set, fragments, multiplier)
        elif isinstance(sel, FragmentSpreadNode):
            frag = fragments.get(sel.name.value)
            if frag is not None:
                total += query_cost(frag.selection_set, fragments, multiplier)
    return total


class CostLimit(ValidationRule):
    """Refuses an operation whose :func:`query_cost` exceeds ``MAX_COST``."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        fragments = {f.name.value: f for f in self.context.document.definitions
                     if f.__class__.__name__ == "FragmentDefinitionNode"}
        cost = query_cost(node.selection_set, fragments)
        if cost > MAX_COST:
            self.report_error(GraphQLError(
                f"query cost {cost} exceeds the limit {MAX_COST}; ask for fewer items "
                "(smaller limit arguments) or fewer nested lists", node))


def make_schema() -> strawberry.Schema:
    """The schema with its depth, size and cost limits (fresh extensions per request)."""
    return strawberry.Schema(query=Query, config=StrawberryConfig(auto_camel_case=False),
                             extensions=[
                                 lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
                                 lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
                                 lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
                                 lambda: AddValidationRules([CostLimit])])


async def context(request: HTTPConnection) -> dict[str, Any]:
    """Request context: the live runtime and the signed-in viewer (401/403 otherwise).

    A WebSocket is refused here, before strawberry sees it: there are no subscriptions."""
    if request.scope["type"] == "websocket":
        raise WebSocketException(status.WS_1008_POLICY_VIOLATION,
                                 "GraphQL is served over HTTP only (no subscriptions)")
    rt: Runtime = request.app.state.runtime
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("not authenticated: send 'Authorization: Bearer <access token>'")
    user: Principal = rt.accounts.authenticate(token, rt.clock())
    if not user.has("viewer"):
        raise PermissionError(f"this needs the viewer role; you are {user.role}")
    return {"rt": rt, "user": user, "request": request}


class _Router(GraphQLRouter):
    """strawberry's router, refusing an HTTP body that is not one JSON object with our JSON
    400 (strawberry called ``.get`` on whatever the body held: a string or a number gave 500)."""

    def parse_json(self, data: str | bytes) -> object:
        try:
            body = self.decode_json(data)
        except ValueError as exc:
            raise HTTPException(400, f"the request body is not JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise HTTPException(400, "the request body must be one JSON object with a 'query' "
                                     f"(no batches), not a JSON {type(body).__name__}")
        return body


def graphql_router() -> GraphQLRouter:
    """The ``/graphql`` router (GET and POST queries; GraphiQL page without data access)."""
    return _Router(make_schema(), context_getter=context, graphql_ide="graphiql",
                   subscription_protocols=())
