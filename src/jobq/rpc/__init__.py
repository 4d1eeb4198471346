"""The gRPC boundary: generated modules (_gen), conversions and status-code mapping."""
