"""Developer tools: the capture proxy, replay of captured sessions, and the trace printer."""
