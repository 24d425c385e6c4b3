// Declarations only (include/cfuzzer.h); SwiftPM needs one source file for a C target.
#include "cfuzzer.h"
