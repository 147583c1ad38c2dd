namespace StreamClone.Relay; internal static class Placeholder { }
