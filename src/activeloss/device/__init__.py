"""Where and how fast: the device's fast path (:mod:`.performance`) and several processes
under torchrun (:mod:`.distributed`)."""
