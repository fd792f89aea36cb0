"""`spikefed events`: compression statistics and lossless compression of event recordings."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from spikefed.cli.common import fail, user_errors

events_app = typer.Typer(help="Spike-event compression: sizes, compress, decompress "
                         "(docs/communication.md).", no_args_is_help=True)

_REBIN = typer.Option(None, "--rebin-us", min=1, help="lossy: quantise timestamps to this bin "
                      "(µs), merging events that become identical")
_REFRACTORY = typer.Option(None, "--refractory-us", min=1, help="lossy: drop events of a pixel "
                           "within this period (µs) after its last kept event")
_DELTA = typer.Option(False, "--address-delta", help="delta-code x and y as well as t")
_LEVEL = typer.Option(19, "--level", min=1, max=22, help="Zstandard level")


@events_app.command("stats")
def stats(
    files: list[Path] = typer.Argument(..., help=".bs2 / .aedat recordings, or .tar(.gz) "
                                       "archives of .bs2 files"),
    raster_bin_us: int = typer.Option(1000, "--raster-bin-us", min=1,
                                      help="bin of the dense raster compared against (µs)"),
    rebin_us: int | None = _REBIN,
    refractory_us: int | None = _REFRACTORY,
    address_delta: bool = _DELTA,
    level: int = _LEVEL,
) -> None:
    """Bytes of each file's recordings: raw AER, the lossless codec, and a dense binary raster
    (raster B: 1 bit per cell; and its codec); with lossy options, how many events they drop."""
    from spikefed.comm.event_stats import read_event_file, stream_stats

    table = Table(title=f"event compression (Zstandard level {level}, raster bins "
                  f"{raster_bin_us} µs)")
    for column in ("file", "recs", "events", "dropped refr/rebin", "raw AER B", "codec B",
                   "raw/codec", "raster B", "raster codec B"):
        table.add_column(column, overflow="fold")
    with user_errors():
        for path in files:
            recordings = read_event_file(path)
            total = None
            for rec in recordings:
                s = stream_stats(rec, raster_bin_us=raster_bin_us, rebin_us=rebin_us,
                                 refractory_us=refractory_us, address_delta=address_delta,
                                 level=level)
                total = s if total is None else total + s
            table.add_row(path.name, str(len(recordings)), str(total.events_in),
                          f"{total.dropped_refractory}/{total.dropped_rebin}",
                          str(total.raw_bytes), str(total.codec_bytes),
                          f"{total.ratio_vs_raw:.2f}", str(total.raster_bytes_packed),
                          str(total.raster_codec_bytes))
    Console().print(table)


@events_app.command("compress")
def compress(
    file: Path = typer.Argument(..., help="one .bs2 or .aedat recording"),
    out: Path = typer.Option(..., "--out", "-o", help="compressed file to write"),
    rebin_us: int | None = _REBIN,
    refractory_us: int | None = _REFRACTORY,
    address_delta: bool = _DELTA,
    level: int = _LEVEL,
) -> None:
    """Compress one recording (lossless unless a lossy option is given)."""
    from spikefed.comm.event_stats import read_event_file
    from spikefed.comm.events import encode_events, rebin, refractory

    with user_errors():
        recordings = read_event_file(file)
        if len(recordings) != 1:
            raise fail(f"{file} holds {len(recordings)} recordings; compress takes one .bs2 or "
                       ".aedat recording (use `spikefed events stats` for archives)")
        events = recordings[0].events
        notes = []
        if refractory_us is not None:
            reduced = refractory(events, refractory_us)
            events = reduced.events
            notes.append(f"refractory {refractory_us} µs dropped {reduced.dropped}")
        if rebin_us is not None:
            reduced = rebin(events, rebin_us)
            events = reduced.events
            notes.append(f"rebin {rebin_us} µs dropped {reduced.dropped}")
        payload = encode_events(events, address_delta=address_delta, level=level)
        out.write_bytes(payload)
    raw = len(recordings[0].events) * recordings[0].raw_bytes_per_event
    typer.echo(f"wrote {out}: {len(events)} events, {len(payload)} bytes (raw AER {raw} bytes, "
               f"ratio {raw / len(payload):.2f})" + "".join(f"; {n}" for n in notes))


@events_app.command("decompress")
def decompress(
    file: Path = typer.Argument(..., help="a file written by `spikefed events compress`"),
    out: Path = typer.Option(..., "--out", "-o", help="recording to write: .bs2, .aedat "
                             "(AER-DAT 2.0) or .npy (spikefed's event array)"),
) -> None:
    """Restore a compressed recording, in the format the output suffix names."""
    import numpy as np

    from spikefed.comm.events import decode_events
    from spikefed.data.events import encode_aedat2, encode_bs2

    writers = {".bs2": encode_bs2, ".aedat": encode_aedat2}
    suffix = out.suffix.lower()
    if suffix not in (*writers, ".npy"):
        raise fail(f"--out {out}: unknown suffix {out.suffix!r}; use .bs2, .aedat or .npy")
    with user_errors():
        if not file.is_file():
            raise FileNotFoundError(f"compressed file {file} does not exist")
        events = decode_events(file.read_bytes())
        if suffix == ".npy":
            np.save(out, events)
        else:
            out.write_bytes(writers[suffix](events))
    typer.echo(f"wrote {out}: {len(events)} events")


def register(app: typer.Typer, reproduce: typer.Typer) -> None:
    """Add the `events` command group to `app`."""
    app.add_typer(events_app, name="events")
