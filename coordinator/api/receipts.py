"""ReceiptService (owner or admin) and KeyService (public): receipts travel as their exact bytes."""

from __future__ import annotations

from aitbc.coordinator.v1 import receipt_service_pb2 as pb
from aitbc.coordinator.v1 import receipt_service_pb2_grpc as pb_grpc
from google.api import httpbody_pb2

from coordinator.api.convert import timestamp
from coordinator.domain.service import Coordinator
from coordinator.receipts import ReceiptKeys
from core import errors
from core.context import current_principal


def _owner() -> str | None:
    """The client id whose jobs the caller may see; None for an admin (every job)."""
    p = current_principal()
    return None if p.role == "admin" else p.id


class ReceiptServicer(pb_grpc.ReceiptServiceServicer):
    def __init__(self, coordinator: Coordinator):
        self.c = coordinator

    async def GetJobReceipt(
        self, request: pb.GetJobReceiptRequest, context
    ) -> pb.GetJobReceiptResponse:
        records, _ = await self.c.receipts_of(request.job_id, client_id=_owner(), limit=100)
        if not records:
            raise errors.NotFound(
                "receipt",
                request.job_id,
                f"job {request.job_id} has no receipt (it is not completed)",
            )
        return pb.GetJobReceiptResponse(
            body=httpbody_pb2.HttpBody(content_type="application/json", data=records[-1].document)
        )

    async def ListJobReceipts(
        self, request: pb.ListJobReceiptsRequest, context
    ) -> pb.ListJobReceiptsResponse:
        records, cursor = await self.c.receipts_of(
            request.job_id, client_id=_owner(), limit=request.page_size, cursor=request.page_token
        )
        return pb.ListJobReceiptsResponse(
            receipts=[
                pb.Receipt(
                    receipt_id=r.receipt_id,
                    job_id=r.job_id,
                    key_id=r.key_id,
                    created_at=timestamp(r.created_at),
                    document=r.document.decode(),
                )
                for r in records
            ],
            next_page_token=cursor,
        )


class KeyServicer(pb_grpc.KeyServiceServicer):
    def __init__(self, keys: ReceiptKeys, coordinator_id: str):
        out = []
        for purpose, ring in (("signing", keys.signing), ("attestation", keys.attestation)):
            for info in ring or ():
                out.append(
                    pb.PublicKey(
                        key_id=info.key_id,
                        alg=info.alg,
                        purpose=purpose,
                        valid_from=timestamp(info.valid_from)
                        if info.valid_from is not None
                        else None,
                        valid_until=timestamp(info.valid_until)
                        if info.valid_until is not None
                        else None,
                    )
                )
        self._response = pb.ListKeysResponse(keys=out, coordinator_id=coordinator_id)

    async def ListKeys(self, request: pb.ListKeysRequest, context) -> pb.ListKeysResponse:
        return self._response
