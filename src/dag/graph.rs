//! Task graph algorithms: dependency order and cycle detection.

use indexmap::IndexMap;

/// Orders tasks so every task comes after all of its upstreams.
///
/// `upstreams` maps each task to the tasks it depends on; unknown names are ignored (they are
/// reported elsewhere). On cycles, returns each cycle found as a path in data-flow order,
/// starting and ending with the same task: `["a", "b", "a"]` means a feeds b and b feeds a.
pub fn topo_order(
    upstreams: &IndexMap<String, Vec<String>>,
) -> Result<Vec<String>, Vec<Vec<String>>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    let index = |name: &str| upstreams.get_index_of(name);
    let mut marks = vec![Mark::New; upstreams.len()];
    let mut order = Vec::with_capacity(upstreams.len());
    let mut cycles = Vec::new();

    for root in 0..upstreams.len() {
        if marks[root] != Mark::New {
            continue;
        }
        // Iterative DFS along "depends on" edges; `path` is the current chain of tasks.
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        marks[root] = Mark::Visiting;
        while let Some(&mut (node, ref mut next_edge)) = path.last_mut() {
            let deps = &upstreams[node];
            if *next_edge < deps.len() {
                let dep = &deps[*next_edge];
                *next_edge += 1;
                let Some(dep) = index(dep) else { continue };
                match marks[dep] {
                    Mark::New => {
                        marks[dep] = Mark::Visiting;
                        path.push((dep, 0));
                    }
                    Mark::Visiting => {
                        let start = path.iter().position(|&(n, _)| n == dep).unwrap_or(0);
                        // path[start..] runs downstream -> upstream; report it in flow order.
                        let mut cycle: Vec<String> = path[start..]
                            .iter()
                            .rev()
                            .map(|&(n, _)| upstreams.get_index(n).unwrap().0.clone())
                            .collect();
                        // Start the report at the task where the cycle closed.
                        cycle.rotate_right(1);
                        cycle.push(cycle[0].clone());
                        cycles.push(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                order.push(upstreams.get_index(node).unwrap().0.clone());
                path.pop();
            }
        }
    }
    if cycles.is_empty() {
        Ok(order)
    } else {
        Err(cycles)
    }
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
}
