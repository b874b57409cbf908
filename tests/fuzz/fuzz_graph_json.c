/* libFuzzer target for the graph JSON reader (backend/attrib/graph_json.c): the input is a
 * whole file. A graph that loads is also queried (inputs, outputs, paths) and pruned, so that
 * whatever the reader let through is touched. Built with -DLOUPE_FUZZ=ON (clang):
 *   build-fuzz/tests/fuzz/fuzz_graph_json -max_total_time=60 */
#include <stdint.h>
#include <stdlib.h>

#include "attrib/graph.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lp_graph *g = lp_graph_parse_json((const char *)data, size, "fuzz");
    if (!g)
        return 0;
    if (g->n_nodes > 0) {
        lp_graph_link *l = NULL;
        if (lp_graph_in(g, 0, 3, &l) >= 0)
            free(l);
        if (lp_graph_out(g, g->n_nodes - 1, 0, &l) >= 0)
            free(l);
    }
    lp_graph_path *p = NULL;
    int n = lp_graph_paths(g, 3, -1, -1, &p);
    if (n >= 0)
        lp_graph_paths_free(p, n);
    lp_graph_free(lp_graph_prune(g, 0.8, 0.98));
    lp_graph_free(g);
    return 0;
}
