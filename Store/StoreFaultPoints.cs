namespace StreamClone.Store;

/// <summary>
/// Named points in the store's write path where a test can inject a failure (Garnet's
/// ExceptionInjectionHelper, per store instance through <see cref="ChunkStoreOptions.FaultHook"/>
/// so parallel tests do not see each other's faults). Throwing from the hook at
/// <see cref="AfterDataSync"/> and then disposing the store is "killed after the chunk is durable,
/// before it is marked present"; reopening must show the chunk absent.
/// </summary>
internal static class StoreFaultPoints
{
    /// <summary>Before a chunk's bytes are written to its object file.</summary>
    public const string BeforeDataWrite = nameof(BeforeDataWrite);

    /// <summary>Flush: just before an object file's fsync; an IOException thrown here stands for the fsync failing.</summary>
    public const string DataSync = nameof(DataSync);

    /// <summary>Flush: object files are synced, the journal records are not yet appended.</summary>
    public const string AfterDataSync = nameof(AfterDataSync);

    /// <summary>Flush: records appended to the journal, journal not yet synced.</summary>
    public const string AfterJournalAppend = nameof(AfterJournalAppend);

    /// <summary>Known copy: the snapshot holding the bytes is referenced, they are not read yet (tests hold a reader here while evicting).</summary>
    public const string BeforeKnownRead = nameof(BeforeKnownRead);

    public static void Hit(ChunkStoreOptions options, string point) => Hit(options.FaultHook, point);

    public static void Hit(Action<string>? hook, string point) => hook?.Invoke(point);
}
