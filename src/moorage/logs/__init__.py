"""What a log's lines say, beyond the engine's framing: search, fields read from them, several logs as one."""
