namespace StreamClone.Shared;

/// <summary>
/// Marks an exception whose one line was already logged (a session logs its close reason once), so
/// the CLI's top level ends with that line alone instead of saying the same thing twice.
/// </summary>
public static class FailureReport
{
    private const string Key = "StreamClone.Reported";

    public static void MarkLogged(Exception ex) => ex.Data[Key] = true;

    public static bool WasLogged(Exception ex) => ex.Data.Contains(Key);
}
