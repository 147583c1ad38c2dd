using System.CommandLine;
using System.CommandLine.Parsing;
using StreamClone.Perf;

namespace StreamClone.Host.Commands;

/// <summary>
/// <c>image generate</c>, <c>image mutate</c>: test images for demos, benchmarks and tests;
/// <c>image analyze</c>: what a snapshot of one would cost on the wire; <c>image baseline</c>: the
/// native zstd | socat comparison on it.
/// </summary>
internal static class ImageCommand
{
    public static Command Create()
    {
        var command = new Command("image", "Write seeded test images that look like VM memory or disks, and changed copies of them.");
        command.Subcommands.Add(CreateGenerate());
        command.Subcommands.Add(CreateMutate());
        command.Subcommands.Add(CreateAnalyze());
        command.Subcommands.Add(CreateBaseline());
        return command;
    }

    private static Command CreateGenerate()
    {
        var output = new Option<string>("--out") { Description = "Image file to write (overwritten).", Required = true };
        var size = new Option<long>("--size")
        {
            Description = "Image size: bytes or K/M/G/T (binary), a multiple of 4K.",
            DefaultValueFactory = _ => 1L << 30,
            CustomParser = ParseImageSize,
        };
        var profile = new Option<ImageProfile>("--profile")
        {
            Description = "memory: many zero pages, short mixed runs; disk: fewer zeros, more text, longer runs.",
            DefaultValueFactory = _ => ImageProfile.Memory,
        };
        var seed = new Option<int>("--seed") { Description = "Same seed, size and profile give the same bytes.", DefaultValueFactory = _ => -1 };

        var command = new Command("generate", "Write a seeded, repeatable image.");
        command.Options.Add(output);
        command.Options.Add(size);
        command.Options.Add(profile);
        command.Options.Add(seed);
        command.SetAction(async (ParseResult r, CancellationToken ct) =>
        {
            var summary = await ImageGenerator.GenerateAsync(r.GetRequiredValue(output), r.GetValue(size), r.GetValue(profile), r.GetValue(seed), ct);
            await r.InvocationConfiguration.Output.WriteLineAsync(summary.ToString());
            return 0;
        });
        return command;
    }

    private static Command CreateMutate()
    {
        var input = new Option<string>("--in") { Description = "Image to copy.", Required = true };
        var output = new Option<string>("--out") { Description = "Changed copy to write (overwritten).", Required = true };
        var percent = new Option<double>("--percent") { Description = "Share of 4 KiB pages to rewrite, 0-100.", DefaultValueFactory = _ => 5 };
        var profile = new Option<ImageProfile>("--profile")
        {
            Description = "Profile whose mix the new content follows (as the image was generated).",
            DefaultValueFactory = _ => ImageProfile.Memory,
        };
        var seed = new Option<int>("--seed") { Description = "Chooses the pages and their new content.", DefaultValueFactory = _ => 2 };
        percent.Validators.Add(result =>
        {
            var value = result.GetValueOrDefault<double>();
            if (double.IsNaN(value) || value is < 0 or > 100)
            {
                result.AddError($"--percent must be within 0..100, got {value}");
            }
        });

        var command = new Command("mutate", "Write a copy of an image with a share of its pages rewritten with new content.");
        command.Options.Add(input);
        command.Options.Add(output);
        command.Options.Add(percent);
        command.Options.Add(profile);
        command.Options.Add(seed);
        command.SetAction(async (ParseResult r, CancellationToken ct) =>
        {
            var summary = await ImageMutator.MutateAsync(r.GetRequiredValue(input), r.GetRequiredValue(output), r.GetValue(percent), r.GetValue(seed), r.GetValue(profile), ct);
            await r.InvocationConfiguration.Output.WriteLineAsync(summary.ToString());
            return 0;
        });
        return command;
    }

    private static Command CreateAnalyze()
    {
        var input = new Option<string>("--in") { Description = "Image to analyze.", Required = true };
        var previous = new Option<string?>("--previous") { Description = "An earlier image the receiver already holds: its chunks travel as known." };
        var level = new Option<int>("--level") { Description = "zstd level of the batches.", DefaultValueFactory = _ => -1 };

        var command = new Command("analyze", "Estimate a snapshot's wire bytes: 4 KiB chunks, dedup, zstd in 64 KiB batches, frame headers.");
        command.Options.Add(input);
        command.Options.Add(previous);
        command.Options.Add(level);
        command.SetAction(async (ParseResult r, CancellationToken ct) =>
        {
            var output = r.InvocationConfiguration.Output;
            var previousPath = r.GetValue(previous);
            ImageAnalysis? first = null;
            if (previousPath is not null)
            {
                first = await ImageAnalyzer.AnalyzeAsync(previousPath, level: r.GetValue(level), ct: ct);
                await output.WriteLineAsync($"{previousPath}: {first}");
            }
            var analysis = await ImageAnalyzer.AnalyzeAsync(r.GetRequiredValue(input), first?.Hashes, level: r.GetValue(level), ct: ct);
            var relative = first is null ? "" : $"; {(double)analysis.WireBytes / first.WireBytes:P2} of the previous snapshot's wire bytes";
            await output.WriteLineAsync($"{r.GetRequiredValue(input)}: {analysis}{relative}");
            return 0;
        });
        return command;
    }

    private static Command CreateBaseline()
    {
        var input = new Option<string>("--in") { Description = "Image to send.", Required = true };
        var level = new Option<int>("--level") { Description = "zstd level (match StreamClone's).", DefaultValueFactory = _ => -1 };
        var threads = new Option<int>("--threads") { Description = "zstd -T.", DefaultValueFactory = _ => 2 };

        var command = new Command("baseline", "Send an image with native zstd | socat over loopback and time it (installs zstd and socat if missing).");
        command.Options.Add(input);
        command.Options.Add(level);
        command.Options.Add(threads);
        command.SetAction(async (ParseResult r, CancellationToken ct) =>
        {
            var result = await NativeZstdBaseline.RunAsync(r.GetRequiredValue(input), r.GetValue(level), r.GetValue(threads), ct: ct);
            await r.InvocationConfiguration.Output.WriteLineAsync(result.ToString());
            return result.Identical ? 0 : 1;
        });
        return command;
    }

    private static long ParseImageSize(ArgumentResult result)
    {
        var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        if (!SizeParser.TryParse(text, out var bytes))
        {
            result.AddError($"--size: '{text}' is not a size (e.g. 64M, 1G, 4G)");
        }
        else if (bytes % ImageGenerator.PageSize != 0)
        {
            result.AddError($"--size: {bytes} bytes is not a multiple of {ImageGenerator.PageSize}");
        }
        return bytes;
    }
}
