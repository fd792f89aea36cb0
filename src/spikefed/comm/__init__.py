"""Communication: update codecs with exact wire bytes, and spike-event compression.

See docs/communication.md.
"""

from .codecs import (
    Codec,
    Encoded,
    EncodedTensor,
    NoneCodec,
    QSGDCodec,
    SignCodec,
    TopKCodec,
    apply_downlink,
    compress_downlink,
    index_dtype,
    make_codec,
)
from .event_stats import StreamStats, read_event_file, stream_stats
from .events import (
    Reduction,
    decode_events,
    decode_raster,
    dense_raster,
    encode_events,
    encode_raster,
    rebin,
    refractory,
)

__all__ = [
    "Codec", "Encoded", "EncodedTensor", "NoneCodec", "QSGDCodec", "Reduction", "SignCodec",
    "StreamStats", "TopKCodec", "apply_downlink", "compress_downlink", "decode_events",
    "decode_raster", "dense_raster", "encode_events", "encode_raster", "index_dtype",
    "make_codec", "read_event_file", "rebin", "refractory", "stream_stats",
]
