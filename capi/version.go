package main

/*
#include "capi.h"
*/
import "C"

// headerVersion is MQ_VERSION_STRING of include/monoquant.h as the library reports it.
func headerVersion() string { return C.GoString(C.mq_version_string()) }
