//go:build race

package safetensors

// raceEnabled: the race detector keeps shadow memory for every byte the program touches, so
// resident-set figures under -race do not measure what the reader keeps.
const raceEnabled = true
