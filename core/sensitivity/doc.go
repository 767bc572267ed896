// Package sensitivity measures how much each layer of a model suffers when it alone is
// quantized to each of a list of formats (ADV-03), and turns that table into a mixed-precision
// recipe under a size budget (RecipeFor, a greedy knapsack).
//
// The model runs where the caller is (Python runs the nn.Module; a C or Go caller runs its
// own); the bookkeeping is here, so every caller measures and ranks the same way:
//
//	s, err := sensitivity.New(m.Reader(), base, formats)  // the layers base quantizes × formats
//	for _, c := range s.Candidates() {
//		res, err := s.Quantize(ctx, m.Reader(), c.Layer, c.Format) // only that layer, stored form
//		// … run the model with c.Layer replaced by res's tensors, on the same inputs as the
//		// float model, and hand both outputs over (any number of batches):
//		s.AddOutput(c.Layer, c.Format, ref, out)
//		// or a metric of your own (higher is better), with s.SetBaseline(floatMetric):
//		s.SetMetric(c.Layer, c.Format, v)
//	}
//	t := s.Table() // ranked, most sensitive layer first; JSON as it is
//	choice, err := sensitivity.RecipeFor(t, sensitivity.Budget{MaxBitsPerWeight: 5})
//
// # What is measured
//
// For every candidate (layer, format) Quantize records the weight SQNR of the layer's tensors
// (10·log10 Σw² / Σ(w − ŵ)², over all the layer's quantized tensors), and the bytes they take
// stored. AddOutput accumulates Σy² and Σ(y − ŷ)² over every batch, in float64, so the output
// SQNR of a candidate is that of all its outputs seen as one vector (torch's compute_sqnr on
// the concatenation). The table's metric is the output SQNR when outputs were given, the
// user's metric when SetMetric was used, else the weight SQNR (the CLI, which cannot run the
// model).
//
// # Score and ranking
//
// Each entry has a score, the damage it does, larger is worse: for SQNR metrics the
// noise-to-signal ratio 10^(−SQNR/10) (noises of independent layers add, so scores of
// different layers can be summed, as the knapsack does); for a user metric the drop from the
// float model's value (baseline − value). A layer's sensitivity is its score in its smallest
// format (the one that saves the most); layers are ranked by it, most sensitive first. The
// map Table.Sensitivity() is what core/search (and monoquant.search(sensitivity=...)) takes to
// seed its first generation.
//
// # The knapsack (RecipeFor)
//
// Every layer takes one of the formats of the table. Budget is either the bits per weight of
// the table's layers (8 · Σ stored bytes / Σ weights) or the size in bytes of the whole
// checkpoint (Table.OtherBytes, the tensors of no table layer, plus the layers' stored bytes).
// The greedy is the classic one for the multiple-choice knapsack (Sinha & Zoltners 1979):
//
//  1. every layer starts in its smallest format; if that is over the budget, the budget cannot
//     be met (the error says the smallest reachable size);
//  2. each layer's formats are cut to the lower convex hull of (bytes, score): a format that
//     costs more bytes and does not lower the score, or lowers it less per byte than a bigger
//     one, is never chosen;
//  3. the steps along every hull (from one format to the next bigger one) are taken in
//     decreasing order of score removed per byte added (ties: table order, then smaller step
//     first); a step that does not fit the remaining budget is skipped, and so are the later
//     steps of that layer;
//  4. the recipe holds one rule per table layer with its chosen format, then {"match": "*",
//     "skip": true} (the table's layers are the ones the base quantized, so nothing else
//     changes).
//
// The result is deterministic for a table and a budget; it is within one step's score of the
// best choice of the LP relaxation, which is optimal when a step fits whole.
package sensitivity
