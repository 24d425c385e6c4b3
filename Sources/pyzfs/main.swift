// Only the entry point lives here: code in main.swift is main-actor isolated, and libfuse calls
// back on its own threads (PyzfsFUSE keeps those callbacks elsewhere).
if MountHelper.isInvoked { MountHelper.main() }
Pyzfs.runMain()
