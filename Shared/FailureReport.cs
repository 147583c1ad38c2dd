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

    /// <summary>
    /// The cause to report: parallel stages (Dataflow blocks, several verify workers) that fail together
    /// surface as nested AggregateExceptions, and the first inner exception is the one reason.
    /// </summary>
    public static Exception FirstCause(Exception ex)
    {
        while (ex is AggregateException aggregate && aggregate.Flatten().InnerExceptions is [var first, ..])
        {
            ex = first;
        }
        return ex;
    }
}
