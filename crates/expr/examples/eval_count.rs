//! Evaluates a typical hub filter N times (default 100 000) against one event, for
//! instruction counts that do not depend on machine load:
//!
//! ```sh
//! cargo build --release -p shield-expr --example eval_count
//! for n in 0 100000; do valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!   target/release/examples/eval_count $n 2>&1 | grep 'Collected'; done
//! ```
//! (instructions per evaluation = difference / 100 000).

#[path = "../tests/common/event.rs"]
mod event;

use std::hint::black_box;

use event::{HTTP_FILTER, nginx_event};
use shield_expr::{Compiler, Value};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let src = std::env::args()
        .nth(2)
        .unwrap_or_else(|| HTTP_FILTER.to_string());
    let mut c = Compiler::new();
    c.var("evt");
    let program = c.compile(&src).expect("the filter compiles");
    let evt = nginx_event("/wp-login.php");
    let vars = [Value::Object(&evt)];
    let mut hits = 0usize;
    // One warm-up evaluation in both runs, so the difference is n evaluations exactly.
    hits += usize::from(program.run_bool(&vars) == Ok(true));
    for _ in 0..n {
        hits += usize::from(black_box(program.run_bool(black_box(&vars))) == Ok(true));
    }
    println!("{hits} of {} evaluations true", n + 1);
}
