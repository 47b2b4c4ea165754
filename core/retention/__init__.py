"""Retention: a closed ticket's personal data is kept only as long as ``[retention]`` says
(core.retention.purge)."""
