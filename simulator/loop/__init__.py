"""The compiled engine's parts, one concept a file: layout (names of the arrays), heap (events), queues
(stations and the batcher), decide (decisions at capture), events (the loop), lindley (the recursion), setup
(static state), ring (frame slots). simulator.compiled puts them together; the rules are simulator.kernels'."""
