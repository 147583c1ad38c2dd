namespace StreamClone.Perf; internal static class Placeholder { }
