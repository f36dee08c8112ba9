//! Task graph algorithms, on petgraph: dependency order, cycles with their paths (for located
//! errors), and the transitive reduction the graph view draws.
//!
//! Pure functions over task names; knows nothing of files, spans or rendering.

use std::collections::VecDeque;

use indexmap::IndexMap;
use petgraph::algo::tred::{dag_to_toposorted_adjacency_list, dag_transitive_reduction_closure};
use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{EdgeRef, IntoNeighbors};

/// The tasks as a graph: node `i` is the `i`-th task of `upstreams` (declaration order), and
/// an edge runs from each upstream to the task that depends on it (the way data flows).
/// Unknown upstream names are left out (they are reported elsewhere).
fn flow_graph(upstreams: &IndexMap<String, Vec<String>>) -> DiGraph<&str, ()> {
    let mut graph = DiGraph::with_capacity(upstreams.len(), upstreams.len());
    for name in upstreams.keys() {
        graph.add_node(name.as_str());
    }
    for (task, deps) in upstreams.values().enumerate() {
        for dep in deps.iter().filter_map(|dep| upstreams.get_index_of(dep)) {
            graph.update_edge(NodeIndex::new(dep), NodeIndex::new(task), ());
        }
    }
    graph
}

/// Orders tasks so every task comes after all of its upstreams.
///
/// `upstreams` maps each task to the tasks it depends on. On cycles, returns one cycle per
/// knot of mutually dependent tasks, as a path in data-flow order that starts and ends with the
/// knot's first-declared task: `["a", "b", "a"]` means a feeds b and b feeds a.
pub fn topo_order(
    upstreams: &IndexMap<String, Vec<String>>,
) -> Result<Vec<String>, Vec<Vec<String>>> {
    let graph = flow_graph(upstreams);
    match toposort(&graph, None) {
        Ok(order) => Ok(order.into_iter().map(|node| graph[node].to_string()).collect()),
        Err(_) => Err(cycles(&graph)),
    }
}

/// One cycle per strongly connected component that has one, in declaration order.
fn cycles(graph: &DiGraph<&str, ()>) -> Vec<Vec<String>> {
    let mut starts: Vec<(NodeIndex, Vec<NodeIndex>)> = tarjan_scc(graph)
        .into_iter()
        .filter_map(|component| {
            let start = *component.iter().min()?;
            let knotted = component.len() > 1 || graph.contains_edge(start, start);
            knotted.then_some((start, component))
        })
        .collect();
    starts.sort_by_key(|(start, _)| *start);
    starts
        .into_iter()
        .map(|(start, component)| {
            shortest_loop(graph, start, &component)
                .into_iter()
                .map(|node| graph[node].to_string())
                .collect()
        })
        .collect()
}

/// The shortest path from `start` back to itself that stays inside `component` (a breadth-first
/// search; one exists because the component is strongly connected), `start` at both ends.
fn shortest_loop(
    graph: &DiGraph<&str, ()>,
    start: NodeIndex,
    component: &[NodeIndex],
) -> Vec<NodeIndex> {
    let mut came_from: Vec<Option<NodeIndex>> = vec![None; graph.node_count()];
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in graph.edges(node).map(|edge| edge.target()) {
            if next == start {
                let mut path = vec![start, node];
                while let Some(previous) = came_from[path[path.len() - 1].index()] {
                    path.push(previous);
                }
                // Built backwards from the closing edge (a self-loop gives `[start, start]`).
                path.reverse();
                return path;
            }
            if came_from[next.index()].is_none() && component.contains(&next) {
                came_from[next.index()] = Some(node);
                queue.push_back(next);
            }
        }
    }
    vec![start, start]
}

/// The dependency edges `(upstream, task)` that are not implied by a longer path: with a → b →
/// c, the edge a → c adds nothing to the order and is left out. `order` must be a topological
/// order of `upstreams`' tasks (as [`topo_order`] returns).
pub fn transitive_reduction(
    order: &[String],
    upstreams: &IndexMap<String, Vec<String>>,
) -> Vec<(String, String)> {
    let graph = flow_graph(upstreams);
    let sorted: Vec<NodeIndex> =
        order.iter().filter_map(|name| upstreams.get_index_of(name).map(NodeIndex::new)).collect();
    if sorted.len() != graph.node_count() {
        return Vec::new();
    }
    let (by_rank, _) = dag_to_toposorted_adjacency_list::<_, u32>(&graph, &sorted);
    let (reduction, _closure) = dag_transitive_reduction_closure(&by_rank);
    let name = |rank: u32| graph[sorted[rank as usize]].to_string();
    (0..sorted.len() as u32)
        .flat_map(|from| (&reduction).neighbors(from).map(move |to| (from, to)))
        .map(|(from, to)| (name(from), name(to)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> IndexMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(t, deps)| (t.to_string(), deps.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    #[test]
    fn diamond_orders_upstreams_first() {
        let g = graph(&[("d", &["b", "c"]), ("b", &["a"]), ("c", &["a"]), ("a", &[])]);
        let order = topo_order(&g).unwrap();
        let pos = |t: &str| order.iter().position(|x| x == t).unwrap();
        assert!(pos("a") < pos("b") && pos("a") < pos("c"));
        assert!(pos("b") < pos("d") && pos("c") < pos("d"));
    }

    #[test]
    fn cycle_is_reported_in_flow_order() {
        let g = graph(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"])]);
        assert_eq!(topo_order(&g).unwrap_err(), vec![vec!["a", "b", "c", "a"]]);
    }

    #[test]
    fn self_loop_is_a_cycle() {
        let g = graph(&[("a", &["a"])]);
        assert_eq!(topo_order(&g).unwrap_err(), vec![vec!["a", "a"]]);
    }

    #[test]
    fn each_knot_is_reported_once_with_its_shortest_loop() {
        // Two separate cycles, the second with a shortcut: c ⇄ d and d → e → c.
        let g = graph(&[
            ("x", &[]),
            ("a", &["b"]),
            ("b", &["a", "x"]),
            ("c", &["d", "e"]),
            ("d", &["c"]),
            ("e", &["d"]),
        ]);
        assert_eq!(topo_order(&g).unwrap_err(), vec![vec!["a", "b", "a"], vec!["c", "d", "c"]]);
    }

    #[test]
    fn the_reduction_drops_edges_implied_by_longer_paths() {
        let g = graph(&[("a", &[]), ("b", &["a"]), ("c", &["a", "b"]), ("d", &["c", "a"])]);
        let order = topo_order(&g).unwrap();
        let mut edges = transitive_reduction(&order, &g);
        edges.sort();
        let expected = [("a", "b"), ("b", "c"), ("c", "d")];
        assert_eq!(edges, expected.map(|(x, y)| (x.to_string(), y.to_string())));
    }
}
