// Overlay demo. Until the full overlay demo lands it shows what exists: the build of the engine.
Console.WriteLine("Overlay demo: the engine is being assembled; see README.md for what works today.");
return 0;
