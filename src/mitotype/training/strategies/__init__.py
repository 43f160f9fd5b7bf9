"""Training strategies as plug-ins: the protocol (:mod:`.base`) and the one list of them (:mod:`.registry`)."""
