#ifndef PYZFS_CFUZZER_H
#define PYZFS_CFUZZER_H
#include <stddef.h>
#include <stdint.h>

// libFuzzer's driver (compiler-rt, libclang_rt.fuzzer), linked by -sanitize=fuzzer. The fuzzer's
// main.swift calls it, because SwiftPM gives every executable its own `main`.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
