"""Several replicas behind one Service: every id names the replica that made it (REPLICA_ID), and a
request for another replica's id goes to that replica (PEER_URL, one hop) — only when the owner looks
like a pod of the same StatefulSet (REPLICA_ID's name, another ordinal); anything else is unknown.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..settings import GatewaySettings
from .upstream import Upstream, relay, scrub, streamed
from .validation import ApiError

CONTENT_URL = re.compile(r"(/v1/(?:images|videos)/)([^/?#]+)(/content)")
ORDINAL = re.compile(r"^(.*?)(\d{1,5})$")  # a StatefulSet pod: <name>-<ordinal>
FORWARDED = "x-glm-image-sglang-forwarded"  # set on a request passed to its owner replica (no second hop)


class Replicas:
    def __init__(self, settings: GatewaySettings, upstream: Upstream) -> None:
        self.me = settings.replica_id
        self.peer_url = settings.peer_url
        self.upstream = upstream
        m = ORDINAL.match(self.me or "")
        self.sibling = re.compile(rf"^{re.escape(m[1])}\d{{1,5}}$") if m else None  # same name, another ordinal

    def public_id(self, upstream_id: str) -> str:
        """The id a client sees: with REPLICA_ID, prefixed by the replica that made it (a DNS label, so the
        first '.' ends it whatever SGLang's id contains)."""
        return f"{self.me}.{upstream_id}" if self.me else upstream_id

    def resolve(self, public_id: str) -> tuple[str | None, str]:
        """(the replica that made it, SGLang's own id). Without REPLICA_ID ids are SGLang's own; with it,
        an id must start with this replica or a sibling pod, else it is unknown here (404, no call)."""
        if not self.me:
            return None, public_id
        owner, _, rest = public_id.partition(".")
        if rest and (owner == self.me or (self.sibling is not None and self.sibling.match(owner))):
            return owner, rest
        raise ApiError(404, f"'{public_id}' is not an id this service made.", None, "not_found")

    def publish(self, body: Any) -> Any:
        """SGLang's answer about jobs and files as clients see it: ids and content URLs carry the replica."""
        if not self.me:
            return body
        if isinstance(body, list):
            return [self.publish(item) for item in body]
        if not isinstance(body, dict):
            return body
        out: dict[str, Any] = {}
        for key, value in body.items():
            if key == "id" and isinstance(value, str):
                out[key] = self.public_id(value)
            elif key == "url" and isinstance(value, str):
                out[key] = CONTENT_URL.sub(lambda m: m[1] + self.public_id(m[2]) + m[3], value)
            else:
                out[key] = self.publish(value) if key == "data" else value
        return out

    def answer(self, resp: httpx.Response, request_id: str | None = None) -> Response:
        """relay() for answers that name jobs or files: scrubbed, and with ids as clients see them."""
        if resp.status_code >= 400 or "json" not in resp.headers.get("content-type", ""):
            return relay(resp, request_id)
        try:
            body = resp.json()
        except ValueError:
            return relay(resp, request_id)
        return JSONResponse(self.publish(scrub(body)), resp.status_code)

    async def owned(
        self, request: Request, kind: str, public_id: str, local: Callable[[str], Awaitable[Response]]
    ) -> Response:
        """The one place for an id's route: another replica's id goes there; this replica's id is
        answered by `local(SGLang's id)`, and a 404 from it says the id did not survive a restart."""
        owner, upstream_id = self.resolve(public_id)
        if owner is not None and owner != self.me:
            return await self.forward(request, owner, public_id)
        response = await local(upstream_id)
        if response.status_code == 404 and owner is not None:
            raise ApiError(
                404,
                f"{kind} '{public_id}' is not on replica {self.me}: an unknown id, or one made before this "
                "replica restarted (SGLang keeps jobs and files in memory and on the pod's own disk).",
                None,
                "not_found",
            )
        return response

    async def forward(self, request: Request, owner: str, public_id: str) -> Response:
        """A request for another replica's job or file, passed to that replica's gateway as it came."""
        if request.headers.get(FORWARDED):
            raise ApiError(404, f"'{public_id}' is not on replica {owner} (forwarded here already).", None, "not_found")
        assert self.peer_url is not None and self.me is not None
        headers = {k: request.headers[k] for k in ("authorization", "x-request-id") if k in request.headers}
        headers[FORWARDED] = self.me
        url = self.peer_url.format(replica=owner) + request.url.path
        http = self.upstream.http
        req = http.build_request(request.method, url, params=request.query_params, headers=headers, timeout=60)
        try:
            resp = await http.send(req, stream=True)
        except httpx.TransportError:
            raise ApiError(
                404,
                f"'{public_id}' belongs to replica {owner}, which is gone (restarted, moved or scaled down): its "
                "jobs and files went with it. Create it again.",
                None,
                "replica_gone",
            ) from None
        return streamed(resp)
