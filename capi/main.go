// Command capi is libmonoquant.so: the C ABI of include/monoquant.h over the Go engine in core/.
//
// Build it with `go build -buildmode=c-shared -o build/libmonoquant.so ./capi` (`make lib`). Every
// //export is a thin shim: check the arguments, look up the handle, call core, map the error.
// Caller memory is wrapped with unsafe.Slice for the length of one call only; no Go pointer is
// handed to C or kept by C.
package main

func main() {}
