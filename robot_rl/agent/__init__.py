"""Episodes on the graph, without the graph: the latest state of a robot (observation), the episode
state machine (episode), episode events (events), what the recorder samples (recording), tasks by
name (tasks) and policy weights as bytes (weights). Pure numpy/torch; the nodes wire it.

Import the submodules directly: the recorder needs no torch, and importing it costs seconds.
"""
