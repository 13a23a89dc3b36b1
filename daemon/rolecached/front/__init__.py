"""The front of every listener: the gate, the strict request parser, the lanes that answer from
memory, and the listening sockets kept through restarts."""
