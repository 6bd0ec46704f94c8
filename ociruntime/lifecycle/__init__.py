"""The lifecycle commands, one module per verb family (the CLI imports only the one a command needs):

- ``create``: create and run (load, validate, plan, start the C init, serve its requests)
- ``exec``: exec (a new process in a running container)
- ``control``: start, state, kill, delete, list (the light commands: no `os`, no cgroups package)
- ``cgroupcmds``: pause, resume, ps, update, events (through the cgroups package's one interface)

Nothing is imported here: a light command must not pay for the heavy modules.
"""
