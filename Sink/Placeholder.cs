namespace StreamClone.Sink; internal static class Placeholder { }
