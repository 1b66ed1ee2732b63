"""`aitbc receipt`: fetch a job's signed receipt (exact bytes), verify one, list keys."""

import dataclasses
import hashlib
import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from client import download, keys, render
from client.cli_common import EXIT_API, CliError, Ctx, command, read_input, to_dict, usage
from core.receipts import VerificationResult

app = typer.Typer(help="Signed receipts of completed jobs.", no_args_is_help=True)

JOB_ID_RE = re.compile(r"^job_[0-9a-f]{32}$")


@command(app, "get")
def get(
    ctx: Ctx,
    job_id: Annotated[str, typer.Argument(help="Job id.", show_default=False)],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the receipt to this file.")
    ] = None,
) -> None:
    """Print (or save) a job's latest receipt, byte-for-byte as signed."""
    document = ctx.client.get_receipt(job_id)
    if output is None:
        out = typer.get_binary_stream("stdout")
        # The exact bytes; a newline only for a terminal, so `> file` keeps the document intact.
        out.write(document + (b"\n" if out.isatty() else b""))
        out.flush()
        return
    download.write_file(output, document)
    info = {
        "path": str(output),
        "bytes": len(document),
        "sha256": hashlib.sha256(document).hexdigest(),
    }
    if ctx.json:
        ctx.emit({"job_id": job_id, **info})
    else:
        typer.echo(f"wrote {len(document)} bytes to {output}")


@command(app, "list")
def list_receipts(
    ctx: Ctx,
    job_id: Annotated[str, typer.Argument(help="Job id.", show_default=False)],
) -> None:
    """Every receipt of a job, oldest first."""
    receipts, token = [], ""
    while True:
        page, token = ctx.client.list_receipts(job_id, 100, token)
        receipts += page
        if not token:
            break
    if ctx.json:
        ctx.emit({"receipts": [to_dict(r) for r in receipts]})
        return
    rows = [
        (r.receipt_id, render.when(r, "created_at", render.SHORT), r.key_id, str(len(r.document)))
        for r in receipts
    ]
    headers = ("receipt_id", "created", "key_id", "bytes")
    ctx.console.print(render.grid_table(headers, rows, keep=("receipt_id", "key_id")))


@command(app, "keys")
def list_keys(ctx: Ctx) -> None:
    """The coordinator's published receipt keys (save with --json for --keys-file)."""
    resp = ctx.client.list_keys()
    if ctx.json:
        ctx.emit(resp)
    else:
        ctx.console.print(render.keys_table(resp))


def _load_document(ctx: Ctx, source: str) -> tuple[bytes, str]:
    if source == "-" or os.path.exists(source):
        return read_input(source, "receipt"), source
    if JOB_ID_RE.match(source):
        return ctx.client.get_receipt(source), f"job {source}"
    raise usage(f"receipt: {source!r} is neither a file nor a job id (job_<32 hex>)")


def _trusted(
    ctx: Ctx,
    key: list[str],
    attestation_key: list[str],
    keys_file: str | None,
    miner_key: list[str],
) -> keys.TrustedKeys:
    if keys_file is not None and (key or attestation_key):
        raise usage("--keys-file and --key/--attestation-key are exclusive")
    if attestation_key and not key:
        raise usage("--attestation-key needs --key (the signing key) as well")
    claim_keys = keys.parse_miner_keys(miner_key, name="--miner-key")
    if keys_file is not None:
        trusted = keys.from_file(Path(keys_file))
    elif key:
        trusted = keys.pinned(key, attestation_key, names=("--key", "--attestation-key"))
    else:
        trusted = ctx.client.trusted_keys()
    return dataclasses.replace(trusted, claim_keys=claim_keys)


def _report(result: VerificationResult, trusted: keys.TrustedKeys) -> dict[str, Any]:
    doc = result.receipt or {}
    attestations = doc.get("attestations") if isinstance(doc.get("attestations"), list) else []
    metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    has_claim = "miner_claim" in metadata
    problems = result.problems
    return {
        "ok": result.ok,
        "problems": problems,
        "receipt_id": doc.get("receipt_id"),
        "job_id": doc.get("job_id"),
        "provider": doc.get("provider"),
        "key_id": result.key_id,
        "keys": trusted.source,
        "attestations": len(attestations),
        "attestations_checked": trusted.attestation is not None,
        "miner_claim": (
            "absent"
            if not has_claim
            else "failed"
            if any(p.startswith("miner_claim") for p in problems)
            else "verified (miner identity)"
            if trusted.claim_keys is not None
            else "verified (integrity; --miner-key checks identity)"
        ),
    }


@command(app, "verify")
def verify(
    ctx: Ctx,
    source: Annotated[
        str, typer.Argument(help="Receipt file ('-': stdin) or a job id.", show_default=False)
    ],
    key: Annotated[
        list[str] | None,
        typer.Option("--key", help="Pinned signing key id (repeatable) instead of /v1/keys."),
    ] = None,
    attestation_key: Annotated[
        list[str] | None,
        typer.Option("--attestation-key", help="Pinned attestation key id (repeatable)."),
    ] = None,
    keys_file: Annotated[
        str | None, typer.Option("--keys-file", help="Keys JSON (`aitbc receipt keys --json`).")
    ] = None,
    miner_key: Annotated[
        list[str] | None,
        typer.Option("--miner-key", help="MINER_ID=KEY: check the miner claim's signer."),
    ] = None,
) -> None:
    """Verify a receipt: fields, signature, attestations, miner claim (exit 0 OK, 1 not)."""
    document, where = _load_document(ctx, source)
    trusted = _trusted(ctx, key or [], attestation_key or [], keys_file, miner_key or [])
    result = trusted.verify(document)
    report = _report(result, trusted)
    if ctx.json:
        ctx.emit({"source": where, **report})
    else:
        _print_report(report, where)
    if not result.ok:
        raise CliError(f"{where} does not verify: " + "; ".join(result.problems), EXIT_API)


def _print_report(r: dict[str, Any], where: str) -> None:
    name = r["receipt_id"] or where
    head = f"receipt {name}" + (
        f" (job {r['job_id']}, provider {r['provider']})" if r["job_id"] else ""
    )
    if not r["ok"]:
        typer.echo(f"FAILED {head}")
        for problem in r["problems"]:
            typer.echo(f"  - {problem}")
        return
    typer.echo(f"OK {head}")
    typer.echo(f"  signature: verified, key {r['key_id']} ({r['keys']})")
    if not r["attestations"]:
        typer.echo("  attestations: none")
    elif r["attestations_checked"]:
        typer.echo(f"  attestations: {r['attestations']} verified")
    else:
        typer.echo(f"  attestations: {r['attestations']} not checked (no attestation keys)")
    typer.echo(f"  miner claim: {r['miner_claim']}")
