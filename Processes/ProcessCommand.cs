using System.Reflection;

namespace StreamClone.Processes;

/// <summary>
/// What to run: the program, its arguments (passed as an argv, never through a shell), and how its output
/// is observed. Every process this code base starts is described by one of these and started by
/// <see cref="RunningProcess.Start"/> or <see cref="ProcessRunner.RunAsync"/>.
/// </summary>
public sealed record ProcessCommand(string FileName, IReadOnlyList<string> Arguments)
{
    /// <summary>How messages name the process; default: the program's file name.</summary>
    public string Name { get; init; } = Path.GetFileName(FileName);

    /// <summary>Variables set (a value) or removed (null) on top of this process's environment.</summary>
    public IReadOnlyDictionary<string, string?> Environment { get; init; } = new Dictionary<string, string?>();

    public string? WorkingDirectory { get; init; }

    /// <summary>Where the program comes from, added to the one line saying it could not be started
    /// (e.g. "apt-get install qemu-utils").</summary>
    public string? InstallHint { get; init; }

    /// <summary>Keeps the child's stdin open as <see cref="RunningProcess.Stdin"/>; otherwise it is closed at
    /// once, so a child never reads our terminal and a tool that asks gets EOF.</summary>
    public bool KeepStdinOpen { get; init; }

    /// <summary>Each stdout line (without CR/LF), on the reader's thread: keep it short, it delays the next line.</summary>
    public Action<string>? StdoutLine { get; init; }

    /// <summary>Each stderr line (without CR/LF), on the reader's thread.</summary>
    public Action<string>? StderrLine { get; init; }

    /// <summary>Stdout text as it arrives, before it is split into lines: for prompts that end without a newline.</summary>
    public Action<string>? StdoutText { get; init; }

    /// <summary>Lines of each stream kept for <see cref="RunningProcess.Stdout"/>, <see cref="RunningProcess.Stderr"/> and
    /// line waits (the oldest are dropped beyond it): a --json summary, a log or a tool's error fits; a console
    /// that prints for hours does not, and keeps its own.</summary>
    public int KeptLines { get; init; } = 100_000;

    /// <summary>This program again with other arguments (`dotnet app.dll …` when it was started that way): the host's
    /// source and sink children, the fuzzer's per-target children.</summary>
    public static ProcessCommand ThisProgram(string name, params IEnumerable<string> arguments)
    {
        var self = System.Environment.ProcessPath ?? throw new InvalidOperationException("this process has no path to start again");
        IEnumerable<string> prefix = Path.GetFileNameWithoutExtension(self) == "dotnet"
            ? [Assembly.GetEntryAssembly()?.Location ?? throw new InvalidOperationException("no entry assembly to start again")]
            : [];
        return new ProcessCommand(self, [.. prefix, .. arguments]) { Name = name };
    }

    /// <summary>The command as a person would type it (arguments with spaces quoted), for messages.</summary>
    public string CommandLine =>
        string.Join(' ', Arguments.Select(a => a.Length == 0 || a.Contains(' ', StringComparison.Ordinal) ? $"\"{a}\"" : a).Prepend(FileName));
}
