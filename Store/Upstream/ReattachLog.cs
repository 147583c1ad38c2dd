using Microsoft.Extensions.Logging;

namespace StreamClone.Store.Upstream;

/// <summary>Reattach events of a pulling node (sink or relay): ids 3150-3199 (3100-3149 are the pulling session's), never reused.</summary>
internal static partial class ReattachLog
{
    [LoggerMessage(3150, LogLevel.Warning, "Upstream {Upstream} is gone ({Reason}); reattaching to the next of {Candidates} candidates within {Seconds:F0} s")]
    public static partial void UpstreamGone(ILogger logger, string upstream, string reason, int candidates, double seconds);

    [LoggerMessage(3151, LogLevel.Error, "Upstream {Upstream} broke the protocol ({Reason}); nothing it sent unverified was kept; trying the next of {Candidates} candidates within {Seconds:F0} s")]
    public static partial void UpstreamTainted(ILogger logger, string upstream, string reason, int candidates, double seconds);

    [LoggerMessage(3152, LogLevel.Information, "Reattach attempt {Attempt} to {Upstream}")]
    public static partial void Attempt(ILogger logger, int attempt, string upstream);

    [LoggerMessage(3153, LogLevel.Warning, "Reattach attempt {Attempt} to {Upstream} failed: {Reason}")]
    public static partial void AttemptFailed(ILogger logger, int attempt, string upstream, string reason);

    [LoggerMessage(3154, LogLevel.Information, "Reattached to {Upstream}: snapshot {SnapshotId} resumes at {Present}/{Total} chunks")]
    public static partial void Reattached(ILogger logger, string upstream, string snapshotId, long present, long total);

    [LoggerMessage(3155, LogLevel.Warning, "Upstream hint '{Hint}' from the offer is not HOST:PORT; skipped")]
    public static partial void BadHint(ILogger logger, string hint);
}
