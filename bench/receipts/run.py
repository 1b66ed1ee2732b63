"""Receipts issued and verified per second on one pinned core (goal: 10k/s each)."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

from core.receipts import (
    KeyRing,
    Signer,
    build_receipt,
    canonical_bytes,
    content_hash,
    sign_claim,
    sign_receipt,
    verify_receipt,
)
from core.receipts.canonical import drop_nulls
from core.receipts.keys import check_signature

GOAL_PER_S = 10_000


def _pin(cpu: int | None) -> int:
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {chosen})
    return chosen


def _receipts(n: int, coordinator: Signer, with_claim: bool) -> list[dict]:
    miner = Signer.generate()
    docs = []
    for i in range(n):
        artifact = content_hash(f"result-{i}".encode())
        claim = None
        if with_claim:
            claim = sign_claim(
                miner,
                job_id=f"job-{i:08d}",
                lease_id=f"lease-{i:08d}",
                artifact_hash=artifact,
                started_at=1_760_000_000_000 + i,
                completed_at=1_760_000_002_500 + i,
                miner_id="miner-0001",
            )
        docs.append(
            build_receipt(
                job_id=f"job-{i:08d}",
                provider="miner-0001",
                client="client-0001",
                units=2.5 + i % 7,
                unit_type="gpu_seconds",
                price=0.000125 * (1 + i % 11),
                model="runwayml/stable-diffusion-v1-5",
                payload={"prompt": f"a lighthouse at dusk #{i}", "steps": 30, "seed": i},
                started_at=1_760_000_000 + i,
                completed_at=1_760_000_003 + i,
                artifact_hash=artifact,
                coordinator_id=coordinator.key_id[:8],
                chain_id=12345,
                metadata={"region": "eu-west", "gpu": "RTX 4090", "attempt": 1},
                miner_claim=claim,
            )
        )
    docs.append(miner.public_key)  # type: ignore[arg-type]  # carried out for claim_keys
    return docs


def _rate(fn: Callable[[object], object], items: list, repeats: int, chunk: int = 200) -> float:
    """Items per second in the fastest `chunk`-item window over `repeats` passes.

    The minimum time (as timeit advises) because this 2-CPU machine is shared: other tenants
    only ever slow a window down, so the fastest window is the core's own speed.
    """
    best = float("inf")
    for _ in range(repeats):
        for start in range(0, len(items), chunk):
            window = items[start : start + chunk]
            t0 = time.perf_counter()
            for item in window:
                fn(item)
            best = min(best, (time.perf_counter() - t0) / len(window))
    return 1 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=3000, help="receipts per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    args = parser.parse_args()
    cpu = _pin(args.cpu)
    coordinator, attester = Signer.generate(), Signer.generate()
    ring, att_ring = KeyRing.single(coordinator), KeyRing.single(attester)
    print(
        f"pinned to CPU {cpu}; n={args.n} x {args.repeats} passes, fastest 200-item window;"
        f" goal {GOAL_PER_S}/s each"
    )

    msg = canonical_bytes({"x": "y" * 1000})
    sig = coordinator.sign(msg)
    sign_us = 1e6 / _rate(lambda _: coordinator.sign(msg), [None] * 2000, args.repeats)
    verify_us = 1e6 / _rate(
        lambda _: check_signature(sig, msg, coordinator.public_key), [None] * 2000, args.repeats
    )
    print(
        f"Ed25519 alone (PyNaCl/libsodium, 1 kB): sign {sign_us:.1f} us, verify {verify_us:.1f} us"
        f" -> ceilings: issue (2 signs) {1e6 / (2 * sign_us):.0f}/s, verify 1/2/3 signatures"
        f" {1e6 / verify_us:.0f}/{1e6 / (2 * verify_us):.0f}/{1e6 / (3 * verify_us):.0f}/s"
    )

    rows, last = [], None
    for label, with_claim in (("receipt", False), ("receipt + miner claim", True)):
        docs = _receipts(args.n, coordinator, with_claim)
        miner_key = docs.pop()
        checks = {"keys": ring, "attestation_keys": att_ring, "require_attestation": True}
        if with_claim:
            checks["claim_keys"] = {"miner-0001": miner_key}
        issue = _rate(lambda d: sign_receipt(d, coordinator, attester), docs, args.repeats)
        stored = [sign_receipt(d, coordinator, attester)[1] for d in docs]
        assert all(verify_receipt(s, **checks).ok for s in stored)
        full = _rate(lambda s, c=checks: verify_receipt(s, **c), stored, args.repeats)
        sig_only = _rate(lambda s: verify_receipt(s, keys=ring), stored, args.repeats)
        rows.append((label, issue, full, sig_only))
        if not with_claim:
            last = (docs, stored)

    print(f"{'':22} {'issued/s':>9} {'verified/s':>11} {'sig-only/s':>11}   ratio to goal")
    for label, issue, full, sig_only in rows:
        ratios = " / ".join(f"{r / GOAL_PER_S:.2f}" for r in (issue, full, sig_only))
        print(f"{label:22} {issue:9.0f} {full:11.0f} {sig_only:11.0f}   {ratios}")
    print(
        "issued = field rules + canonicalize + sign + attest + stored bytes; verified = parse +"
        " field rules + signature + attestation (+ miner claim); sig-only = no attestation keys"
    )
    assert last is not None
    _before_after(*last, coordinator, attester, ring, args.repeats)


def _before_after(docs, stored, coordinator, attester, ring, repeats) -> None:
    """The optimizations, measured on the plain receipts (no miner claim)."""

    def naive_canonical(d: dict) -> bytes:  # prune every time, json.dumps with per-call kwargs
        body = {k: v for k, v in d.items() if k not in ("signature", "attestations")}
        return json.dumps(drop_nulls(body), sort_keys=True, separators=(",", ":")).encode()

    def naive_issue(d: dict) -> dict:  # first version: naive canonical, serialize, re-parse
        message = naive_canonical(d)
        signed = {**d, "signature": coordinator.sign(message)}
        signed["attestations"] = [attester.sign(message)]
        return json.loads(json.dumps(signed, sort_keys=True, separators=(",", ":")))

    assert all(naive_canonical(d) == canonical_bytes(d) for d in docs[:50])
    before = 1e6 / _rate(naive_canonical, docs, repeats)
    after = 1e6 / _rate(canonical_bytes, docs, repeats)
    print(f"before/after  canonicalize: naive {before:.1f} us -> fast path {after:.1f} us")
    before = _rate(naive_issue, docs, repeats)
    after = _rate(lambda d: sign_receipt(d, coordinator, attester), docs, repeats)
    print(f"before/after  issue: {before:.0f}/s -> {after:.0f}/s")
    # A leading space keeps the bytes valid JSON but defeats the stored-layout path, so this
    # measures the general path (duplicate-checking parse + canonicalize) on the same input.
    before = _rate(lambda s: verify_receipt(b" " + s, keys=ring), stored, repeats)
    after = _rate(lambda s: verify_receipt(s, keys=ring), stored, repeats)
    print(
        f"before/after  verify sig-only: general path {before:.0f}/s -> stored bytes {after:.0f}/s"
    )


if __name__ == "__main__":
    main()
