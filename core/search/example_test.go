package search_test

import (
	"fmt"

	"github.com/monoquant/monoquant/core/search"
)

// A search over two layers for (metric, size): ask, measure, tell, then read the front.
func Example() {
	space, err := search.ParseSpace([]byte(`{
	  "layers": [{"name": "fc1", "params": 4096, "row": 64}, {"name": "head", "params": 640, "row": 64}],
	  "objectives": [{"name": "metric", "goal": "max"}, {"name": "size", "goal": "min"}],
	  "limits": [{"match": "head", "min_bits": 8}],
	  "population": 4}`))
	if err != nil {
		panic(err)
	}
	e, err := search.New(space, 1)
	if err != nil {
		panic(err)
	}
	for i := 0; i < 12; i++ {
		c := e.Ask()
		// Quantize with c.Recipe (plan.Options{Recipe: c.Recipe}) and measure; here a stand-in:
		size, loss := 0.0, 0.0
		for k, r := range c.Recipe.Rules[:2] {
			bits := float64(r.Bits)
			if r.Skip {
				bits = 32
			}
			size += bits * float64(space.Layers[k].Params) / 8
			loss += 1 / bits
		}
		if err := e.Tell(c.Trial, map[string]float64{"metric": 1 - loss, "size": size}); err != nil {
			panic(err)
		}
	}
	first := e.Trials()[0]
	fmt.Println(len(first.Recipe.Rules), "rules, the last:", first.Recipe.Rules[2].Match, first.Recipe.Rules[2].Skip)
	fmt.Println("front is non-empty:", len(e.Front()) > 0)
	// Output:
	// 3 rules, the last: * true
	// front is non-empty: true
}
