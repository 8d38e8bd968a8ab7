// Compiled once to build the shared precompiled LibTorch header (see HippoDeps.cmake).
