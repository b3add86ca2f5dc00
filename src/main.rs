fn main() -> std::process::ExitCode {
    mlwf::cli::main()
}
