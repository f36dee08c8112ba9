//! Lays a DAG out left to right for the graph view: each task in the column of its longest
//! path from a root, edges as curves between columns. Only the essential edges are drawn: an
//! edge that a longer path already implies (a → c beside a → b → c) is left out. Produces coordinates only; the template
//! draws the SVG (and escapes the task names).

use std::collections::HashMap;

use crate::dag::Dag;

const NODE_WIDTH: i64 = 170;
const NODE_HEIGHT: i64 = 34;
const COLUMN_GAP: i64 = 60;
const ROW_GAP: i64 = 18;
const MARGIN: i64 = 10;

pub struct GraphNode {
    pub task_id: String,
    /// Shortened to fit the box; the full id is in the tooltip.
    pub label: String,
    pub kind: String,
    pub state: String,
    pub href: Option<String>,
    pub x: i64,
    pub y: i64,
    pub text_x: i64,
    pub text_y: i64,
}

pub struct GraphEdge {
    /// SVG path data (numbers only).
    pub path: String,
}

pub struct GraphSvg {
    pub width: i64,
    pub height: i64,
    pub node_width: i64,
    pub node_height: i64,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

/// Lays out `dag`; `state_of` gives each task's state and link in the run shown, if any.
pub fn layout(dag: &Dag, state_of: impl Fn(&str) -> Option<(String, String)>) -> GraphSvg {
    let mut column: HashMap<&str, i64> = HashMap::new();
    for task_id in &dag.topo_order {
        let task = &dag.tasks[task_id];
        let depth = task.depends_on.iter().map(|up| column[up.as_str()] + 1).max().unwrap_or(0);
        column.insert(task_id, depth);
    }
    let mut rows_in_column: HashMap<i64, i64> = HashMap::new();
    let mut position: HashMap<&str, (i64, i64)> = HashMap::new();
    let mut nodes = Vec::new();
    for task_id in &dag.topo_order {
        let col = column[task_id.as_str()];
        let row = rows_in_column.entry(col).or_insert(0);
        let x = MARGIN + col * (NODE_WIDTH + COLUMN_GAP);
        let y = MARGIN + *row * (NODE_HEIGHT + ROW_GAP);
        *row += 1;
        position.insert(task_id, (x, y));
        let (state, href) = match state_of(task_id) {
            Some((state, href)) => (state, Some(href)),
            None => ("none".to_string(), None),
        };
        nodes.push(GraphNode {
            task_id: task_id.clone(),
            label: shorten(task_id, 20),
            kind: dag.tasks[task_id].kind.clone(),
            state,
            href,
            x,
            y,
            text_x: x + 10,
            text_y: y + NODE_HEIGHT / 2 + 5,
        });
    }
    let mut edges = Vec::new();
    for (up, task) in dag.essential_edges() {
        let (x1, y1) = position[up.as_str()];
        let (x2, y2) = position[task.as_str()];
        let (sx, sy) = (x1 + NODE_WIDTH, y1 + NODE_HEIGHT / 2);
        let (ex, ey) = (x2, y2 + NODE_HEIGHT / 2);
        let bend = (ex - sx) / 2;
        edges.push(GraphEdge {
            path: format!("M{sx},{sy} C{},{sy} {},{ey} {ex},{ey}", sx + bend, ex - bend),
        });
    }
    let columns = column.values().copied().max().map_or(0, |c| c + 1);
    let rows = rows_in_column.values().copied().max().unwrap_or(0);
    GraphSvg {
        width: 2 * MARGIN + columns * NODE_WIDTH + (columns - 1).max(0) * COLUMN_GAP,
        height: 2 * MARGIN + rows * NODE_HEIGHT + (rows - 1).max(0) * ROW_GAP,
        node_width: NODE_WIDTH,
        node_height: NODE_HEIGHT,
        nodes,
        edges,
    }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let kept: String = text.chars().take(max - 1).collect();
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::Registry;

    #[test]
    fn tasks_sit_in_the_column_of_their_longest_path() {
        let source = "[tasks.a]\nkind = \"noop\"\n[tasks.b]\nkind = \"noop\"\ndepends_on = [\"a\"]\n\
                      [tasks.c]\nkind = \"noop\"\ndepends_on = [\"a\", \"b\"]\n[tasks.d]\nkind = \"noop\"\n";
        let dag = crate::dag::compile("g.toml", source, "g", &Registry::builtin()).unwrap();
        let svg = layout(&dag, |_| None);
        let x = |id: &str| svg.nodes.iter().find(|n| n.task_id == id).unwrap().x;
        assert_eq!(x("a"), x("d"));
        assert!(x("b") > x("a"));
        assert!(x("c") > x("b"), "c depends on b, so it goes right of it");
        // a → b, b → c; a → c is implied by a → b → c and left out.
        assert_eq!(svg.edges.len(), 2);
        assert!(svg.nodes.iter().all(|n| n.x + svg.node_width <= svg.width));
        assert!(svg.nodes.iter().all(|n| n.y + svg.node_height <= svg.height));
    }
}
