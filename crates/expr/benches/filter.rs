//! ns per evaluation of typical hub expressions against a CrowdSec-like event.
//! Run: `cargo bench -p shield-expr --bench filter`.

#[path = "../tests/common/event.rs"]
mod event;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use event::{HTTP_FILTER, nginx_event};
use shield_expr::{Compiler, Value};

fn bench(c: &mut Criterion) {
    let mut compiler = Compiler::new();
    compiler.var("evt");
    let cases = [
        ("http_filter_match", HTTP_FILTER, "/wp-login.php"),
        ("http_filter_miss", HTTP_FILTER, "/index.html"),
        (
            "cve_2017_9841",
            "evt.Meta.log_type == 'http_access-log' && Lower(evt.Meta.http_path) endsWith 'util/php/eval-stdin.php'",
            "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
        ),
        (
            "sensitive_files_any",
            "evt.Meta.log_type in ['http_access-log', 'http_error-log'] and \
             any(['/.env', '/.git/config', '/.aws/credentials', '/wp-config.php.bak', '/.htpasswd'], \
             { evt.Parsed.request endsWith #})",
            "/.htpasswd",
        ),
        ("groupby", "evt.Meta.source_ip", "/"),
    ];
    for (name, src, path) in cases {
        let program = compiler.compile(src).unwrap();
        let evt = nginx_event(path);
        c.bench_function(name, |b| {
            b.iter(|| {
                let vars = [Value::Object(&evt)];
                black_box(program.run(black_box(&vars)).unwrap().as_bool())
            })
        });
    }
    c.bench_function("compile_http_filter", |b| {
        b.iter(|| black_box(compiler.compile(black_box(HTTP_FILTER)).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
