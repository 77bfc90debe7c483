//! The `offbox` binary: see `offbox --help`.
#![forbid(unsafe_code)]

fn main() {
    // libtss2 prints its own WARNING/ERROR lines for conditions offbox reports itself;
    // keep its log quiet unless the operator asked for it. Set before any thread starts.
    if std::env::var_os("TSS2_LOG").is_none() {
        std::env::set_var("TSS2_LOG", "all+none");
    }
    std::process::exit(offbox::main());
}
