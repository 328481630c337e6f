fn main() -> std::process::ExitCode {
    enforcer::cli::main()
}
